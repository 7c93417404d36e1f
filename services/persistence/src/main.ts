import { connectNatsBus } from '@switchboard/bus';
import { createDb, withDb } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { exitOnNatsClosed, loadConfigOrExit, runMain } from '@switchboard/runtime';
import { migratePersistence, startPersistenceService } from './app.js';
import { loadPersistenceConfig } from './config.js';
import { PERSISTENCE_CONNECTION_SETTINGS } from './db/connection-settings.js';
import type { PersistenceDatabase } from './db/schema.js';

const config = loadConfigOrExit('persistence', loadPersistenceConfig);
const logger = createLogger({ name: 'persistence', level: config.logLevel });

/**
 * A statement unanswered this long fails and is retried on a new connection (createDb's
 * `queryTimeoutMs`). The batch insert takes milliseconds; a stuck one would hold its messages.
 */
const QUERY_TIMEOUT_MS = 30_000;

runMain({
  logger,
  async start() {
    // Migrations first, on a pool without the query timeout: one may run, or wait for another
    // replica's lock, for longer. The service's own check afterwards finds nothing to do.
    await withDb<PersistenceDatabase, void>({ url: config.databaseUrl, applicationName: 'switchboard-persistence-migrate' }, (db) =>
      migratePersistence(db, logger),
    );
    const database = createDb<PersistenceDatabase>({
      url: config.databaseUrl,
      poolSize: config.databasePoolSize,
      applicationName: 'switchboard-persistence',
      settings: PERSISTENCE_CONNECTION_SETTINGS,
      queryTimeoutMs: QUERY_TIMEOUT_MS,
    });
    const bus = await connectNatsBus({
      servers: config.natsServers,
      name: 'switchboard-persistence',
      inboxPrefix: '_INBOX.persistence',
      subjects: createSubjects(config.subjectPrefix),
      logger,
      onClosed: exitOnNatsClosed(logger),
    });
    const service = await startPersistenceService({ config, logger, bus, database });
    return {
      async stop() {
        await service.stop();
        await bus.close();
        await database.destroy();
      },
    };
  },
});
