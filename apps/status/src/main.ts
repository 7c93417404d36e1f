import { natsConnectOptions, withoutCredentials } from '@switchboard/bus';
import { ConfigError, commonEnv, env, loadConfig } from '@switchboard/config';
import { connect, ErrorCode, type NatsConnection, NatsError } from 'nats';
import { collectStats } from './collect-stats.js';
import { ExitCode } from './exit-code.js';
import { formatOverview, missingServices, toJsonEntries, toRows } from './overview.js';

/**
 * `npm run status`: asks every Switchboard service instance for its stats over the NATS services
 * framework (`$SRV.STATS`) and prints one line per instance: the counterpart of the old server's
 * `status` command, and names each service with no instance answering. `--json` prints the same
 * as JSON. Exits with an `ExitCode`, so that cron jobs and monitoring can use it.
 */
const config = loadStatusConfig();
const servers = config.NATS_URL.map(withoutCredentials).join(', ');

let nc: NatsConnection;
try {
  nc = await connect({
    ...natsConnectOptions(config.NATS_URL),
    name: 'switchboard-status',
    // Its own inbox prefix: the `status` NATS user may read replies there and nowhere else.
    inboxPrefix: '_INBOX.status',
    timeout: config.STATUS_TIMEOUT_MS,
    // A connection lost while the instances answer is reported as such (below): reconnected, the
    // answers sent meanwhile are lost, and their services would be reported missing.
    reconnect: false,
  });
} catch (error) {
  // Not being able to reach NATS is an answer an operator needs in one line, not a stack trace.
  process.stderr.write(`switchboard-status: cannot connect to NATS at ${servers}: ${connectFailure(error)}\n`);
  process.exit(ExitCode.natsUnreachable);
}
try {
  // A connection that closes while the answers come ends the wait with an error or with what came.
  const collected = await collectStats(nc, config.STATUS_TIMEOUT_MS).catch((error: unknown) => {
    if (nc.isClosed()) return undefined;
    throw error;
  });
  if (!collected || nc.isClosed()) {
    // Not "service missing": whatever did not answer may have answered into the lost connection.
    process.stderr.write(`switchboard-status: lost the connection to NATS at ${servers} while the services answered\n`);
    process.exit(ExitCode.natsUnreachable);
  }
  const { stats, skipped } = collected;
  // What the other instances answered is still worth printing, and the exit code still says whether each service has one.
  for (const line of skipped) process.stderr.write(`switchboard-status: warning: ${line}\n`);
  const rows = toRows(stats, config.NATS_SUBJECT_PREFIX);
  if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(toJsonEntries(rows), null, 2)}\n`);
  else process.stdout.write(`Switchboard "${config.NATS_SUBJECT_PREFIX}" on ${servers}\n\n${formatOverview(rows)}`);
  process.exitCode = missingServices(rows).length === 0 ? ExitCode.allAnswered : ExitCode.serviceMissing;
} catch (error) {
  // Its own code: exiting 1 would tell a cron job that a service is down, which nobody knows.
  process.stderr.write(`switchboard-status: ${failureMessage(error).replace(/\s*\n\s*/g, ' ')}\n`);
  process.exitCode = ExitCode.failed;
} finally {
  await nc.close();
}

/** The settings; an invalid one is named in a message without a stack trace, and exits with its own code. */
function loadStatusConfig() {
  try {
    return loadConfig({ ...commonEnv, STATUS_TIMEOUT_MS: env.integer({ default: 1_500, min: 100, max: 60_000 }) });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`switchboard-status: ${error.message}\n`);
    process.exit(ExitCode.configInvalid);
  }
}

/**
 * nats.js reports a refused server by its own code with the socket's error, which names the
 * address, as the cause, and a server that accepts but never greets as a bare `TIMEOUT`.
 */
function connectFailure(error: unknown): string {
  if (error instanceof NatsError && error.code === ErrorCode.Timeout)
    return `no answer within ${config.STATUS_TIMEOUT_MS} ms (STATUS_TIMEOUT_MS)`;
  return failureMessage(error);
}

/** An error's message, with the cause nats.js chains to its own errors. */
function failureMessage(error: unknown): string {
  if (error instanceof NatsError) return error.chainedError ? `${error.message} (${error.chainedError.message})` : error.message;
  return error instanceof Error ? error.message : String(error);
}
