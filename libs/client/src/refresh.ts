import type { TokenTimes } from './util.js';

/** The shortest wait before a refresh, whatever the token and the clock say. */
export const MIN_REFRESH_DELAY_MS = 1_000;

export interface RefreshTiming {
  /** When the provider handed the token over, by the local clock. */
  receivedAt: number;
  /** The local clock now. */
  now: number;
  /** How long before the token expires to refresh it; at most half of its lifetime is used. */
  leadMs: number;
  /** Whether the token came from a refresh on the same socket, rather than with the connection. */
  refreshed: boolean;
}

/**
 * How long to wait before refreshing a token the gateway accepted. The token's `iat` and `exp` are
 * the issuer's clock, which the local one may be hours off.
 *
 * - The token's lifetime (`exp − iat`) is counted from when the provider handed it over, which
 *   no clock offset can move.
 * - The local reading of `exp` is used instead when it is sooner, for a provider that hands out a
 *   cached token issued a while ago; but not when it says the token had expired before it
 *   arrived, which only a clock running ahead can say of a token the gateway accepted.
 * - A refreshed token waits at least a quarter of its lifetime from its arrival: with a clock
 *   ahead by a little less than the lifetime, the local reading of each fresh token's `exp` is
 *   nearly due, and every refresh would otherwise be followed by another at once, without end.
 *
 * Without `iat` the local reading of `exp` is all there is.
 */
export function refreshDelay(times: TokenTimes, { receivedAt, now, leadMs, refreshed }: RefreshTiming): number {
  const { expiresAt, issuedAt } = times;
  if (issuedAt === undefined) {
    const remaining = Math.max(0, expiresAt - now);
    return Math.max(MIN_REFRESH_DELAY_MS, remaining - Math.min(leadMs, remaining / 2));
  }
  const lifetime = Math.max(0, expiresAt - issuedAt);
  const byLifetime = receivedAt + lifetime;
  const expires = expiresAt > receivedAt ? Math.min(expiresAt, byLifetime) : byLifetime;
  const refreshAt = expires - Math.min(leadMs, lifetime / 2);
  const earliest = refreshed ? receivedAt + lifetime / 4 : now;
  return Math.max(MIN_REFRESH_DELAY_MS, Math.max(refreshAt, earliest) - now);
}
