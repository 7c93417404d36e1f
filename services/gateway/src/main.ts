import { connectNatsBus } from '@switchboard/bus';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { exitOnNatsClosed, loadConfigOrExit, runMain, serveStartingProbes } from '@switchboard/runtime';
import { startGateway } from './app.js';
import { loadGatewayConfig } from './config.js';

const config = loadConfigOrExit('gateway', loadGatewayConfig);
const logger = createLogger({ name: 'gateway', level: config.logLevel });

runMain({
  logger,
  async start() {
    // Alive from the start: waiting for NATS is not a hang to restart.
    const startingProbes = await serveStartingProbes({ port: config.opsPort, host: config.host, logger });
    const bus = await connectNatsBus({
      servers: config.natsServers,
      name: 'switchboard-gateway',
      inboxPrefix: '_INBOX.gateway',
      subjects: createSubjects(config.subjectPrefix),
      logger,
      onClosed: exitOnNatsClosed(logger),
    });
    const gateway = await startGateway({ config, logger, bus, startingProbes });
    return {
      async stop() {
        await gateway.stop();
        await bus.close();
      },
    };
  },
});
