export interface BackoffOptions {
  /** The ceiling of the first delay; each attempt doubles it. */
  minMs: number;
  /** The ceiling never grows past this. */
  maxMs: number;
}

/**
 * Exponential backoff with full jitter: a delay drawn uniformly from [0, min(maxMs, minMs × 2^attempt)),
 * so that clients dropped at the same moment (a gateway restart) do not come back at the same moment.
 * `attempt` counts from 0.
 */
export function backoffDelay(attempt: number, { minMs, maxMs }: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(0, attempt), 30));
  return Math.floor(random() * Math.max(0, ceiling));
}
