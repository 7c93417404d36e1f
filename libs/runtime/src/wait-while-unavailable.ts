import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '@switchboard/logging';

const FIRST_WAIT_MS = 250;
const MAX_WAIT_MS = 5_000;

export interface WaitWhileUnavailableOptions {
  logger: Logger;
  /** Whether `error` says the dependency cannot answer yet, rather than that the work is wrong. */
  isUnavailable: (error: unknown) => boolean;
  /** What is waited for, for the log: `waiting for <what>`. */
  what: string;
  /** Ends the wait with its reason, which the process takes for the start given up, not failed. */
  signal?: AbortSignal | undefined;
}

/**
 * Runs `work` until it succeeds or fails for a reason other than its dependency being unavailable.
 * A start waits so for what it needs (PostgreSQL starting or failing over, JetStream without a
 * leader yet), alive and not ready, rather than failing and leaving the restart to a back-off that
 * grows. The waits double from 250 ms to 5 s.
 */
export async function waitWhileUnavailable<T>(
  work: () => Promise<T>,
  { logger, isUnavailable, what, signal }: WaitWhileUnavailableOptions,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (!isUnavailable(error)) throw error;
      // The first failure, then one in twenty: the wait is no news after the first line.
      if (attempt % 20 === 0) logger.warn({ err: error, attempt }, `waiting for ${what}`);
      // Aborted, the wait ends at once; its listener goes with each wait.
      await sleep(Math.min(MAX_WAIT_MS, FIRST_WAIT_MS * 2 ** attempt), undefined, { signal }).catch(() => undefined);
      if (signal?.aborted) throw signal.reason;
    }
  }
}
