import { createLogger } from '@switchboard/logging';
import { loadConfigOrExit, runMain } from '@switchboard/runtime';
import { ensureDemoAgent, startEmbedded } from './app.js';
import { loadEmbeddedConfig } from './config.js';

const config = loadConfigOrExit('switchboard', loadEmbeddedConfig);
const logger = createLogger({ name: 'switchboard', level: config.LOG_LEVEL });

runMain({
  logger,
  // Its start does not wait on anything remote (unless NATS_URL is set): on Ctrl+C during it, let
  // it finish, so the embedded database is closed rather than cut off.
  startGraceMs: 25_000,
  async start() {
    const system = await startEmbedded(config, logger);
    const agent = { username: config.DEMO_AGENT_USERNAME, password: config.DEMO_AGENT_PASSWORD };
    let demoAgent = false;
    // A convenience, not a condition: the chat runs without it (an admin whose password was
    // changed since the first start, say, cannot create it).
    if (agent.username)
      try {
        await ensureDemoAgent(system.urls.authApi, { username: config.ADMIN_USERNAME, password: config.ADMIN_PASSWORD }, agent);
        demoAgent = true;
      } catch (error) {
        logger.warn({ err: error }, 'the demo agent could not be set up; everything else runs');
      }
    process.stderr.write(
      [
        '',
        'Switchboard is running, all in one process.',
        `  Demo page:  ${system.urls.page}`,
        `  WebSocket:  ${system.urls.websocket}`,
        `  Auth API:   ${system.urls.auth}`,
        `  Bus:        ${system.bus}; database: ${system.database}`,
        '',
        `  Customers register on the demo page. Agents log in there too${demoAgent ? ` (demo agent: ${agent.username} / ${agent.password})` : ''};`,
        `  the admin is ${config.ADMIN_USERNAME} (ADMIN_PASSWORD). Ctrl+C stops it; data is kept.`,
        '',
      ].join('\n'),
    );
    return system;
  },
});
