import { createLogger } from '@switchboard/logging';
import { runMain } from '@switchboard/runtime';
import { startPersistenceService } from './app.js';
import { loadPersistenceConfig } from './config.js';

let config: ReturnType<typeof loadPersistenceConfig>;
try {
  config = loadPersistenceConfig();
} catch (error) {
  console.error(`persistence: ${(error as Error).message}`);
  process.exit(1);
}
const logger = createLogger({ name: 'persistence', level: config.logLevel });
runMain({ logger, start: () => startPersistenceService({ config, logger }) });
