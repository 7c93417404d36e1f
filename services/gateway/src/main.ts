import { createLogger } from '@switchboard/logging';
import { runMain } from '@switchboard/runtime';
import { startGateway } from './app.js';
import { loadGatewayConfig } from './config.js';

let config: ReturnType<typeof loadGatewayConfig>;
try {
  config = loadGatewayConfig();
} catch (error) {
  console.error(`gateway: ${(error as Error).message}`);
  process.exit(1);
}
const logger = createLogger({ name: 'gateway', level: config.logLevel });
runMain({ logger, start: () => startGateway({ config, logger }) });
