import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '@switchboard/logging';
import { isDatabaseUnavailable } from './connection-errors.js';

const FIRST_WAIT_MS = 250;
const MAX_WAIT_MS = 5_000;

/**
 * Runs `open` (connect, migrate) until PostgreSQL can be reached: at start, a database not
 * answering yet (starting, failing over, its Service without endpoints) is waited for, as NATS
 * is, rather than failing the start and leaving the restart to a back-off that grows. Any other
 * error (a wrong password, a migration that fails) still fails it at once. `signal` ends the wait
 * with its reason, which the process takes for the start given up, not failed.
 */
export async function openWhenReachable<T>(
  open: () => Promise<T>,
  { logger, signal }: { logger: Logger; signal?: AbortSignal },
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await open();
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (!isDatabaseUnavailable(error)) throw error;
      // The first failure, then one in twenty: the wait is no news after the first line.
      if (attempt % 20 === 0) logger.warn({ err: error, attempt }, 'waiting for PostgreSQL');
      // Aborted, the wait ends at once; its listener goes with each wait.
      await sleep(Math.min(MAX_WAIT_MS, FIRST_WAIT_MS * 2 ** attempt), undefined, { signal }).catch(() => undefined);
      if (signal?.aborted) throw signal.reason;
    }
  }
}
