import { connectNatsBus } from '@switchboard/bus';
import { openWhenReachable } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { exitOnNatsClosed, loadConfigOrExit, runMain, serveStartingProbes } from '@switchboard/runtime';
import { openAuthDatabase, startAuthService } from './app.js';
import { loadAuthConfig } from './config.js';

const config = loadConfigOrExit('auth', loadAuthConfig);
const logger = createLogger({ name: 'auth', level: config.logLevel });

runMain({
  logger,
  async start(signal) {
    // Alive from the start: waiting for PostgreSQL or NATS, or migrating, is not a hang to restart.
    const startingProbes = await serveStartingProbes({ port: config.opsPort, host: config.host, logger });
    const database = await openWhenReachable(
      () =>
        openAuthDatabase(config.databaseUrl, {
          poolSize: config.databasePoolSize,
          logger,
          ensureSigningKey: config.privateKeyPem === undefined,
          signal,
        }),
      { logger, signal },
    );
    const bus = await connectNatsBus({
      servers: config.natsServers,
      name: 'switchboard-auth',
      inboxPrefix: '_INBOX.auth',
      subjects: createSubjects(config.subjectPrefix),
      logger,
      onClosed: exitOnNatsClosed(logger),
    });
    const service = await startAuthService({ config, logger, bus, database, startingProbes, signal });
    return {
      async stop() {
        await service.stop();
        await bus.close();
        await database.destroy();
      },
    };
  },
});
