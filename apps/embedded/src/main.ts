import { createLogger } from '@switchboard/logging';
import { loadConfigOrExit, runMain } from '@switchboard/runtime';
import { ensureDemoAgent, startEmbedded } from './app.js';
import { loadEmbeddedConfig } from './config.js';

const config = loadConfigOrExit('switchboard', loadEmbeddedConfig);
const logger = createLogger({ name: 'switchboard', level: config.LOG_LEVEL });

runMain({
  logger,
  async start() {
    const system = await startEmbedded(config, logger);
    const agent = { username: config.DEMO_AGENT_USERNAME, password: config.DEMO_AGENT_PASSWORD };
    if (agent.username)
      await ensureDemoAgent(
        `http://127.0.0.1:${config.AUTH_PORT}`,
        { username: config.ADMIN_USERNAME, password: config.ADMIN_PASSWORD },
        agent,
      );
    process.stderr.write(
      [
        '',
        'Switchboard is running, all in one process.',
        `  Demo page:  ${system.urls.page}`,
        `  WebSocket:  ${system.urls.websocket}`,
        `  Auth API:   ${system.urls.auth}`,
        `  Bus:        ${system.bus}; database: ${system.database}`,
        '',
        `  Customers register on the demo page. Agents log in there too${agent.username ? ` (demo agent: ${agent.username} / ${agent.password})` : ''};`,
        `  the admin is ${config.ADMIN_USERNAME} (ADMIN_PASSWORD). Ctrl+C stops it; data is kept.`,
        '',
      ].join('\n'),
    );
    return system;
  },
});
