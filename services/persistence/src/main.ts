import { connectNatsBus } from '@switchboard/bus';
import { openWhenReachable } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { exitOnNatsClosed, loadConfigOrExit, runMain, serveStartingProbes } from '@switchboard/runtime';
import { openPersistenceDatabase, startPersistenceService } from './app.js';
import { loadPersistenceConfig } from './config.js';

const config = loadConfigOrExit('persistence', loadPersistenceConfig);
const logger = createLogger({ name: 'persistence', level: config.logLevel });

runMain({
  logger,
  async start(signal) {
    // Alive from the start: waiting for PostgreSQL or NATS, or migrating, is not a hang to restart.
    const startingProbes = await serveStartingProbes({ port: config.opsPort, host: config.host, logger });
    const database = await openWhenReachable(
      () => openPersistenceDatabase(config.databaseUrl, { poolSize: config.databasePoolSize, logger, signal }),
      { logger, signal },
    );
    const bus = await connectNatsBus({
      servers: config.natsServers,
      name: 'switchboard-persistence',
      inboxPrefix: '_INBOX.persistence',
      subjects: createSubjects(config.subjectPrefix),
      logger,
      onClosed: exitOnNatsClosed(logger),
    });
    const service = await startPersistenceService({ config, logger, bus, database, startingProbes, signal });
    return {
      async stop() {
        await service.stop();
        await bus.close();
        await database.destroy();
      },
    };
  },
});
