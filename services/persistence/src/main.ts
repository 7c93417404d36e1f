import { connectNatsBus } from '@switchboard/bus';
import { createDb } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { loadConfigOrExit, runMain } from '@switchboard/runtime';
import { startPersistenceService } from './app.js';
import { loadPersistenceConfig } from './config.js';
import { PERSISTENCE_CONNECTION_SETTINGS } from './db/connection-settings.js';
import type { PersistenceDatabase } from './db/schema.js';

const config = loadConfigOrExit('persistence', loadPersistenceConfig);
const logger = createLogger({ name: 'persistence', level: config.logLevel });

runMain({
  logger,
  async start() {
    const database = createDb<PersistenceDatabase>({
      url: config.databaseUrl,
      poolSize: config.databasePoolSize,
      applicationName: 'switchboard-persistence',
      settings: PERSISTENCE_CONNECTION_SETTINGS,
    });
    const bus = await connectNatsBus({
      servers: config.natsServers,
      name: 'switchboard-persistence',
      inboxPrefix: '_INBOX.persistence',
      subjects: createSubjects(config.subjectPrefix),
      logger,
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
