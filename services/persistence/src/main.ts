import { connectNatsBus } from '@switchboard/bus';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { exitOnNatsClosed, loadConfigOrExit, runMain } from '@switchboard/runtime';
import { openPersistenceDatabase, startPersistenceService } from './app.js';
import { loadPersistenceConfig } from './config.js';

const config = loadConfigOrExit('persistence', loadPersistenceConfig);
const logger = createLogger({ name: 'persistence', level: config.logLevel });

runMain({
  logger,
  async start() {
    const database = await openPersistenceDatabase(config.databaseUrl, { poolSize: config.databasePoolSize, logger });
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
