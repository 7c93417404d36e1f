import { openWhenReachable, withDb } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { migrateAuth } from './app.js';
import { loadAuthConfig } from './config.js';
import type { AuthDatabase } from './db/schema.js';

/** `npm run migrate`: applies the auth service's migrations and exits. */
const config = loadAuthConfig();
const logger = createLogger({ name: 'auth-migrate', level: config.logLevel });
// The schema only. Whether a key is generated and stored is for the service to decide at start,
// from its own JWT_PRIVATE_KEY: a migration run alone (the Helm hook, which never sees that key)
// would otherwise store a private key in the database of a deployment that supplies its own.
// A database not answering yet (created in the same install, failing over during an upgrade) is
// waited for, as the services wait for it: the Job's activeDeadlineSeconds bounds the wait.
await openWhenReachable(
  () =>
    withDb<AuthDatabase, void>({ url: config.databaseUrl, applicationName: 'switchboard-auth-migrate' }, (db) =>
      migrateAuth(db, logger, { ensureSigningKey: false }),
    ),
  { logger },
);
