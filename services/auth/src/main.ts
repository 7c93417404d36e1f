import { createLogger } from '@switchboard/logging';
import { runMain } from '@switchboard/runtime';
import { startAuthService } from './app.js';
import { loadAuthConfig } from './config.js';

let config: ReturnType<typeof loadAuthConfig>;
try {
  config = loadAuthConfig();
} catch (error) {
  console.error(`auth: ${(error as Error).message}`);
  process.exit(1);
}
const logger = createLogger({ name: 'auth', level: config.logLevel });
runMain({ logger, start: () => startAuthService({ config, logger }) });
