/** For the all-in-one process: the persistence service as a library. */
export {
  openPersistenceDatabase,
  type PersistenceService,
  type PersistenceServiceOptions,
  startPersistenceService,
} from './app.js';
export { loadPersistenceConfig, MIN_DATABASE_POOL_SIZE, type PersistenceConfig } from './config.js';
export type { PersistenceDatabase } from './db/schema.js';
