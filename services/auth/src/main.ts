import { connectNatsBus } from '@switchboard/bus';
import { createDb, withDb } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { exitOnNatsClosed, loadConfigOrExit, runMain } from '@switchboard/runtime';
import { migrateAuth, startAuthService } from './app.js';
import { loadAuthConfig } from './config.js';
import type { AuthDatabase } from './db/schema.js';

const config = loadConfigOrExit('auth', loadAuthConfig);
const logger = createLogger({ name: 'auth', level: config.logLevel });

/**
 * A statement unanswered this long fails, and its request gets 503 (createDb's `queryTimeoutMs`).
 * Auth's queries take milliseconds; without it a login on a connection that hangs (a network
 * partition, a failover that moves the address) waited until TCP gave up, about 15 minutes.
 */
const QUERY_TIMEOUT_MS = 10_000;

runMain({
  logger,
  async start() {
    // Migrations first, on a pool without the query timeout: one may run, or wait for another
    // replica's lock, for longer. The service's own check afterwards finds nothing to do.
    await withDb<AuthDatabase, void>({ url: config.databaseUrl, applicationName: 'switchboard-auth-migrate' }, (db) =>
      migrateAuth(db, logger, { ensureSigningKey: config.privateKeyPem === undefined }),
    );
    const database = createDb<AuthDatabase>({
      url: config.databaseUrl,
      poolSize: config.databasePoolSize,
      applicationName: 'switchboard-auth',
      queryTimeoutMs: QUERY_TIMEOUT_MS,
    });
    const bus = await connectNatsBus({
      servers: config.natsServers,
      name: 'switchboard-auth',
      inboxPrefix: '_INBOX.auth',
      subjects: createSubjects(config.subjectPrefix),
      logger,
      onClosed: exitOnNatsClosed(logger),
    });
    const service = await startAuthService({ config, logger, bus, database });
    return {
      async stop() {
        await service.stop();
        await bus.close();
        await database.destroy();
      },
    };
  },
});
