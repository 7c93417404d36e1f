import type { Logger } from '@switchboard/logging';
import { waitWhileUnavailable } from '@switchboard/runtime';
import { isDatabaseUnavailable } from './connection-errors.js';

/**
 * Runs `open` (connect, migrate) until PostgreSQL can be reached: at start, a database not
 * answering yet (starting, failing over, its Service without endpoints) is waited for, as NATS
 * is, rather than failing the start and leaving the restart to a back-off that grows. Any other
 * error (a wrong password, a migration that fails) still fails it at once. `signal` ends the wait
 * with its reason, which the process takes for the start given up, not failed.
 */
export function openWhenReachable<T>(open: () => Promise<T>, { logger, signal }: { logger: Logger; signal?: AbortSignal }): Promise<T> {
  return waitWhileUnavailable(open, { logger, signal, isUnavailable: isDatabaseUnavailable, what: 'PostgreSQL' });
}
