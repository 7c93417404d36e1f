import { connectNatsBus } from '@switchboard/bus';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { exitOnNatsClosed, loadConfigOrExit, runMain } from '@switchboard/runtime';
import { openAuthDatabase, startAuthService } from './app.js';
import { loadAuthConfig } from './config.js';

const config = loadConfigOrExit('auth', loadAuthConfig);
const logger = createLogger({ name: 'auth', level: config.logLevel });

runMain({
  logger,
  async start() {
    const database = await openAuthDatabase(config.databaseUrl, {
      poolSize: config.databasePoolSize,
      logger,
      ensureSigningKey: config.privateKeyPem === undefined,
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
