import { createLogger } from '@switchboard/logging';
import { loadConfigOrExit, runMain } from '@switchboard/runtime';
import { ensureDemoAgent, loadServiceConfigs, startEmbedded } from './app.js';
import { type Credentials, DEMO_ACCOUNTS, loadEmbeddedConfig } from './config.js';

const config = loadConfigOrExit('switchboard', loadEmbeddedConfig);
// The services' own variables too (MAX_FRAME_BYTES, ADMIN_PASSWORD…): a bad one is told in a line
// of its own, as each service tells it, not as a start that failed.
loadConfigOrExit('switchboard', () => loadServiceConfigs(config));
const logger = createLogger({ name: 'switchboard', level: config.LOG_LEVEL });

/** The demo agent as the banner names it: with its password only where that is the documented one, never an operator's own. */
const describeAgent = ({ username, password }: Credentials) =>
  password === DEMO_ACCOUNTS.agent.password ? `${username} / ${password}` : `${username}, password in DEMO_AGENT_PASSWORD`;
/** The documented demo password is shown; one the operator set is only pointed at, never printed. */
const describeAdmin = ({ username, password }: Credentials) =>
  password === DEMO_ACCOUNTS.admin.password ? `${username} / ${password}` : `${username}, password in ADMIN_PASSWORD`;

runMain({
  logger,
  // A signal during start-up aborts the start, which closes the database and gives up: at once
  // while it waits for NATS, else once the step under way (opening the database, migrating) is
  // done. That step is given this long rather than cut off, so that the database is closed whole.
  startGraceMs: 25_000,
  async start(signal) {
    const system = await startEmbedded(config, logger, signal);
    // Stopped as soon as this returns, as any started system is: no demo agent, and no banner saying it runs.
    if (signal.aborted) return system;
    const { admin, demoAgent: agent } = config;
    let demoAgent = false;
    // A convenience, not a condition: the chat runs without it (an admin whose password was
    // changed since the first start, say, cannot create it).
    if (agent && admin)
      try {
        demoAgent = await ensureDemoAgent(system, admin, agent);
        if (!demoAgent)
          logger.warn({ username: agent.username }, 'the demo agent name is taken by an account the demo credentials do not open');
      } catch (error) {
        logger.warn({ err: error }, 'the demo agent could not be set up; everything else runs');
      }
    // A signal during the demo agent's set-up: the same. The services are up (and ready) by now,
    // so it is a stop like any other, not a start given up.
    if (signal.aborted) return system;
    process.stderr.write(
      [
        '',
        'Switchboard is running, all in one process.',
        `  Demo page:  ${system.urls.page}`,
        `  WebSocket:  ${system.urls.websocket}`,
        `  Auth API:   ${system.urls.auth}`,
        `  Bus:        ${system.bus}; database: ${system.database}`,
        '',
        `  Customers register on the demo page. Agents log in there too${demoAgent && agent ? ` (demo agent: ${describeAgent(agent)})` : ''};`,
        admin
          ? `  the admin is ${describeAdmin(admin)}. Ctrl+C stops it; data is kept.`
          : '  no admin was set up (ADMIN_USERNAME, ADMIN_PASSWORD). Ctrl+C stops it; data is kept.',
        '',
      ].join('\n'),
    );
    return system;
  },
});
