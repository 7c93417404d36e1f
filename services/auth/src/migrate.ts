import { createDb } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { migrateAuth } from './app.js';
import { loadAuthConfig } from './config.js';
import type { AuthDatabase } from './db/schema.js';

/** `npm run migrate`: applies the auth service's migrations and exits. */
const config = loadAuthConfig();
const logger = createLogger({ name: 'auth-migrate', level: config.logLevel });
const database = createDb<AuthDatabase>({ url: config.databaseUrl, applicationName: 'switchboard-auth-migrate' });
try {
  await migrateAuth(database.db, config, logger);
} finally {
  await database.destroy();
}
