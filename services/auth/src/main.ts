import { connectNatsBus } from '@switchboard/bus';
import { createDb } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { loadConfigOrExit, runMain } from '@switchboard/runtime';
import { startAuthService } from './app.js';
import { loadAuthConfig } from './config.js';
import type { AuthDatabase } from './db/schema.js';

const config = loadConfigOrExit('auth', loadAuthConfig);
const logger = createLogger({ name: 'auth', level: config.logLevel });

runMain({
  logger,
  async start() {
    const database = createDb<AuthDatabase>({
      url: config.databaseUrl,
      poolSize: config.databasePoolSize,
      applicationName: 'switchboard-auth',
    });
    const bus = await connectNatsBus({
      servers: config.natsServers,
      name: 'switchboard-auth',
      inboxPrefix: '_INBOX.auth',
      subjects: createSubjects(config.subjectPrefix),
      logger,
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
