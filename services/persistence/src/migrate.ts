import { openWhenReachable, withDb } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { migratePersistence } from './app.js';
import { loadPersistenceConfig } from './config.js';
import type { PersistenceDatabase } from './db/schema.js';

/** `npm run migrate`: applies the persistence service's migrations and exits. */
const config = loadPersistenceConfig();
const logger = createLogger({ name: 'persistence-migrate', level: config.logLevel });
// A database not answering yet (created in the same install, failing over during an upgrade) is
// waited for, as the services wait for it: the Job's activeDeadlineSeconds bounds the wait.
await openWhenReachable(
  () =>
    withDb<PersistenceDatabase, void>({ url: config.databaseUrl, applicationName: 'switchboard-persistence-migrate' }, (db) =>
      migratePersistence(db, logger),
    ),
  { logger },
);
