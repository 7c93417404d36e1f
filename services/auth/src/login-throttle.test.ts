import { describe, expect, it } from 'vitest';
import { createLoginThrottle, type LoginThrottleOptions, MAX_TRACKED_KEYS } from './login-throttle.js';

const WINDOW_MS = 60_000;

function throttleWithClock(options: Partial<LoginThrottleOptions> = {}) {
  let time = 1_750_000_000_000;
  const clock = {
    now: () => time,
    advance(ms: number) {
      time += ms;
    },
  };
  const throttle = createLoginThrottle({ maxFailures: 3, windowMs: WINDOW_MS, now: clock.now, ...options });
  return { throttle, clock };
}

describe('createLoginThrottle', () => {
  describe('blocking', () => {
    it('does not block a key that has never failed', () => {
      const { throttle } = throttleWithClock();

      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(0);
      expect(throttle.retryAfterSeconds([])).toBe(0);
    });

    it('does not block a key below maxFailures', () => {
      const { throttle } = throttleWithClock({ maxFailures: 3 });

      throttle.recordFailure(['user:alice']);
      throttle.recordFailure(['user:alice']);

      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(0);
    });

    it('blocks a key once it reaches maxFailures', () => {
      const { throttle } = throttleWithClock({ maxFailures: 3 });

      for (let i = 0; i < 3; i += 1) throttle.recordFailure(['user:alice']);

      expect(throttle.retryAfterSeconds(['user:alice'])).toBeGreaterThan(0);
    });

    it('blocks after a single failure when maxFailures is 1', () => {
      const { throttle } = throttleWithClock({ maxFailures: 1 });

      throttle.recordFailure(['user:alice']);

      expect(throttle.retryAfterSeconds(['user:alice'])).toBeGreaterThan(0);
    });

    it('keeps a key blocked while further failures are recorded', () => {
      const { throttle } = throttleWithClock({ maxFailures: 2 });

      for (let i = 0; i < 10; i += 1) throttle.recordFailure(['user:alice']);

      expect(throttle.retryAfterSeconds(['user:alice'])).toBeGreaterThan(0);
    });

    it('counts each key independently', () => {
      const { throttle } = throttleWithClock({ maxFailures: 3 });

      for (let i = 0; i < 3; i += 1) throttle.recordFailure(['user:alice']);
      throttle.recordFailure(['user:bob']);
      throttle.recordFailure(['user:bob']);

      expect(throttle.retryAfterSeconds(['user:alice'])).toBeGreaterThan(0);
      expect(throttle.retryAfterSeconds(['user:bob'])).toBe(0);
      expect(throttle.retryAfterSeconds(['user:carol'])).toBe(0);
    });

    it('records a failure against every key passed at once', () => {
      const { throttle } = throttleWithClock({ maxFailures: 2 });

      throttle.recordFailure(['user:alice', 'ip:203.0.113.9']);
      throttle.recordFailure(['user:alice', 'ip:203.0.113.9']);

      expect(throttle.retryAfterSeconds(['user:alice'])).toBeGreaterThan(0);
      expect(throttle.retryAfterSeconds(['ip:203.0.113.9'])).toBeGreaterThan(0);
    });

    it('reports a block when any one of the keys asked about is blocked', () => {
      const { throttle } = throttleWithClock({ maxFailures: 2 });

      throttle.recordFailure(['ip:203.0.113.9']);
      throttle.recordFailure(['ip:203.0.113.9']);

      expect(throttle.retryAfterSeconds(['user:alice', 'ip:203.0.113.9'])).toBeGreaterThan(0);
      expect(throttle.retryAfterSeconds(['user:alice', 'ip:198.51.100.1'])).toBe(0);
    });
  });

  describe('retryAfterSeconds', () => {
    it('is the whole window in seconds right after the key is blocked', () => {
      const { throttle } = throttleWithClock({ maxFailures: 2, windowMs: 60_000 });

      throttle.recordFailure(['user:alice']);
      throttle.recordFailure(['user:alice']);

      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(60);
    });

    it('counts down from the first failure of the window, not the latest', () => {
      const { throttle, clock } = throttleWithClock({ maxFailures: 3, windowMs: 60_000 });

      throttle.recordFailure(['user:alice']);
      clock.advance(20_000);
      throttle.recordFailure(['user:alice']);
      clock.advance(20_000);
      throttle.recordFailure(['user:alice']);

      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(20);
    });

    it('rounds a partial second up, and never reports less than 1 while blocked', () => {
      const { throttle, clock } = throttleWithClock({ maxFailures: 1, windowMs: 60_000 });
      throttle.recordFailure(['user:alice']);

      clock.advance(58_500);
      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(2);
      clock.advance(1_499);
      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(1);
    });

    it('is the longest wait among the blocked keys asked about', () => {
      const { throttle, clock } = throttleWithClock({ maxFailures: 1, windowMs: 60_000 });

      throttle.recordFailure(['ip:203.0.113.9']);
      clock.advance(45_000);
      throttle.recordFailure(['user:alice']);

      expect(throttle.retryAfterSeconds(['ip:203.0.113.9'])).toBe(15);
      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(60);
      expect(throttle.retryAfterSeconds(['ip:203.0.113.9', 'user:alice'])).toBe(60);
      expect(throttle.retryAfterSeconds(['user:alice', 'ip:203.0.113.9'])).toBe(60);
    });
  });

  describe('window expiry', () => {
    it('frees a blocked key when its window ends', () => {
      const { throttle, clock } = throttleWithClock({ maxFailures: 2, windowMs: WINDOW_MS });
      throttle.recordFailure(['user:alice']);
      throttle.recordFailure(['user:alice']);

      clock.advance(WINDOW_MS - 1);
      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(1);

      clock.advance(1);
      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(0);
    });

    it('starts counting afresh after the window ends', () => {
      const { throttle, clock } = throttleWithClock({ maxFailures: 3, windowMs: WINDOW_MS });
      throttle.recordFailure(['user:alice']);
      throttle.recordFailure(['user:alice']);

      clock.advance(WINDOW_MS);
      throttle.recordFailure(['user:alice']);
      throttle.recordFailure(['user:alice']);
      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(0);

      throttle.recordFailure(['user:alice']);
      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(60);
    });

    it('does not let failures from an ended window add up with new ones', () => {
      const { throttle, clock } = throttleWithClock({ maxFailures: 2, windowMs: WINDOW_MS });
      throttle.recordFailure(['user:alice']);
      throttle.recordFailure(['user:alice']);
      clock.advance(WINDOW_MS * 5);

      throttle.recordFailure(['user:alice']);

      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(0);
    });
  });

  describe('reset', () => {
    it('unblocks the key it is given', () => {
      const { throttle } = throttleWithClock({ maxFailures: 2 });
      throttle.recordFailure(['user:alice']);
      throttle.recordFailure(['user:alice']);

      throttle.reset('user:alice');

      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(0);
    });

    it('clears the failure count, so the key gets its full allowance again', () => {
      const { throttle } = throttleWithClock({ maxFailures: 3 });
      throttle.recordFailure(['user:alice']);
      throttle.recordFailure(['user:alice']);

      throttle.reset('user:alice');
      throttle.recordFailure(['user:alice']);
      throttle.recordFailure(['user:alice']);

      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(0);
    });

    it('leaves every other key as it was', () => {
      const { throttle } = throttleWithClock({ maxFailures: 2 });
      throttle.recordFailure(['user:alice', 'ip:203.0.113.9']);
      throttle.recordFailure(['user:alice', 'ip:203.0.113.9']);
      throttle.recordFailure(['user:bob']);

      throttle.reset('user:alice');

      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(0);
      expect(throttle.retryAfterSeconds(['ip:203.0.113.9'])).toBe(60);
      throttle.recordFailure(['user:bob']);
      expect(throttle.retryAfterSeconds(['user:bob'])).toBe(60);
    });

    it('is harmless for a key that was never seen', () => {
      const { throttle } = throttleWithClock({ maxFailures: 1 });
      throttle.recordFailure(['user:alice']);

      throttle.reset('user:nobody');

      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(60);
    });
  });

  describe('the bound on tracked keys', () => {
    it('forgets the oldest key rather than growing past MAX_TRACKED_KEYS, and still blocks recent keys', () => {
      const { throttle, clock } = throttleWithClock({ maxFailures: 1, windowMs: 3_600_000 });

      throttle.recordFailure(['user:first']);
      throttle.recordFailure(['user:second']);
      clock.advance(1_000);
      for (let i = 0; i < MAX_TRACKED_KEYS - 2; i += 1) throttle.recordFailure([`spray:${i}`]);
      // Exactly MAX_TRACKED_KEYS keys are tracked so far, and all of them are blocked.
      expect(throttle.retryAfterSeconds(['user:first'])).toBeGreaterThan(0);
      expect(throttle.retryAfterSeconds(['user:second'])).toBeGreaterThan(0);

      throttle.recordFailure(['user:latest']);

      expect(throttle.retryAfterSeconds(['user:first'])).toBe(0);
      expect(throttle.retryAfterSeconds(['user:second'])).toBeGreaterThan(0);
      expect(throttle.retryAfterSeconds(['user:latest'])).toBeGreaterThan(0);
      expect(throttle.retryAfterSeconds([`spray:${MAX_TRACKED_KEYS - 3}`])).toBeGreaterThan(0);
    });

    it('keeps forgetting the oldest keys as more distinct keys arrive', () => {
      const { throttle } = throttleWithClock({ maxFailures: 1, windowMs: 3_600_000 });
      const extra = 100;

      for (let i = 0; i < MAX_TRACKED_KEYS + extra; i += 1) throttle.recordFailure([`key:${i}`]);

      for (const i of [0, 1, extra - 1]) expect(throttle.retryAfterSeconds([`key:${i}`])).toBe(0);
      for (const i of [extra, extra + 1, MAX_TRACKED_KEYS, MAX_TRACKED_KEYS + extra - 1]) {
        expect(throttle.retryAfterSeconds([`key:${i}`])).toBeGreaterThan(0);
      }
    });

    it('drops expired windows before forgetting a key that is still blocked', () => {
      const { throttle, clock } = throttleWithClock({ maxFailures: 1, windowMs: WINDOW_MS });

      for (let i = 0; i < MAX_TRACKED_KEYS - 1; i += 1) throttle.recordFailure([`old:${i}`]);
      clock.advance(WINDOW_MS / 2);
      throttle.recordFailure(['user:alice']);
      clock.advance(WINDOW_MS / 2);
      // Every `old:` window has ended; alice's has half of it left.
      throttle.recordFailure(['user:bob']);

      expect(throttle.retryAfterSeconds(['user:alice'])).toBe(30);
      expect(throttle.retryAfterSeconds(['user:bob'])).toBe(60);
    });
  });
});
