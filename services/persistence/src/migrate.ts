import { withDb } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { migratePersistence } from './app.js';
import { loadPersistenceConfig } from './config.js';
import type { PersistenceDatabase } from './db/schema.js';

/** `npm run migrate`: applies the persistence service's migrations and exits. */
const config = loadPersistenceConfig();
const logger = createLogger({ name: 'persistence-migrate', level: config.logLevel });
await withDb<PersistenceDatabase, void>({ url: config.databaseUrl, applicationName: 'switchboard-persistence-migrate' }, (db) =>
  migratePersistence(db, logger),
);
