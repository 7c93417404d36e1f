/** Upper bound on tracked keys, so a spray of distinct usernames cannot grow memory without limit. */
export const MAX_TRACKED_KEYS = 100_000;

interface Window {
  failures: number;
  resetAt: number;
}

export interface LoginThrottleOptions {
  maxFailures: number;
  windowMs: number;
  now?: () => number;
}

/**
 * Counts failed logins per key (a username, a client address) in fixed windows; a key with
 * `maxFailures` failures in its window is blocked until the window ends. In memory, per replica.
 */
export function createLoginThrottle({ maxFailures, windowMs, now = Date.now }: LoginThrottleOptions) {
  const windows = new Map<string, Window>();

  const live = (key: string): Window | undefined => {
    const window = windows.get(key);
    if (window && window.resetAt <= now()) {
      windows.delete(key);
      return undefined;
    }
    return window;
  };

  const evictExpired = () => {
    const at = now();
    for (const [key, window] of windows) if (window.resetAt <= at) windows.delete(key);
    // Still full: drop the oldest entries (Map iterates in insertion order).
    for (const key of windows.keys()) {
      if (windows.size < MAX_TRACKED_KEYS) break;
      windows.delete(key);
    }
  };

  return {
    /** Seconds until the first blocked key frees up, or 0 when none is blocked. */
    retryAfterSeconds(keys: readonly string[]): number {
      let until = 0;
      for (const key of keys) {
        const window = live(key);
        if (window && window.failures >= maxFailures) until = Math.max(until, window.resetAt);
      }
      return until === 0 ? 0 : Math.max(1, Math.ceil((until - now()) / 1000));
    },
    recordFailure(keys: readonly string[]): void {
      for (const key of keys) {
        const window = live(key);
        if (window) window.failures += 1;
        else {
          if (windows.size >= MAX_TRACKED_KEYS) evictExpired();
          windows.set(key, { failures: 1, resetAt: now() + windowMs });
        }
      }
    },
    reset(key: string): void {
      windows.delete(key);
    },
  };
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
