import { natsConnectOptions, withoutCredentials } from '@switchboard/bus';
import { commonEnv, env, loadConfig } from '@switchboard/config';
import { connect, type EndpointStats, RequestStrategy } from 'nats';
import { formatOverview, toRows } from './overview.js';

/**
 * `npm run status`: asks every Switchboard service instance for its stats over the NATS services
 * framework (`$SRV.STATS`) and prints one line per instance: the counterpart of the old server's
 * `status` command. `--json` prints the rows as JSON.
 */
const config = loadConfig({ ...commonEnv, STATUS_TIMEOUT_MS: env.integer({ default: 1_500, min: 100, max: 60_000 }) });

const nc = await connect({
  ...natsConnectOptions(config.NATS_URL),
  name: 'switchboard-status',
  // Its own inbox prefix: the `status` NATS user may read replies there and nowhere else.
  inboxPrefix: '_INBOX.status',
  timeout: config.STATUS_TIMEOUT_MS,
});
try {
  const stats: EndpointStats[] = [];
  for await (const entry of await nc.services.client({ strategy: RequestStrategy.Timer, maxWait: config.STATUS_TIMEOUT_MS }).stats())
    stats.push(entry);
  const rows = toRows(stats, config.NATS_SUBJECT_PREFIX);
  if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  else
    process.stdout.write(
      `Switchboard "${config.NATS_SUBJECT_PREFIX}" on ${config.NATS_URL.map(withoutCredentials).join(', ')}\n\n${formatOverview(rows)}`,
    );
} finally {
  await nc.close();
}
