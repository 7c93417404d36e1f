import { describe, expect, it } from 'vitest';
import { retryAfterOf, timerDelay } from './errors.js';

describe('retryAfterOf', () => {
  it('takes a number of milliseconds, and nothing else', () => {
    expect(retryAfterOf({ retry_after_ms: 250 })).toBe(250);
    expect(retryAfterOf({ retry_after_ms: 0 })).toBe(0);
    expect(retryAfterOf({})).toBeUndefined();
    expect(retryAfterOf({ retry_after_ms: '250' })).toBeUndefined();
    expect(retryAfterOf({ retry_after_ms: -1 })).toBeUndefined();
    expect(retryAfterOf({ retry_after_ms: Number.NaN })).toBeUndefined();
    expect(retryAfterOf({ retry_after_ms: Number.POSITIVE_INFINITY })).toBeUndefined();
  });

  it('keeps a wait longer than a timer takes, as with a 30-day window', () => {
    expect(retryAfterOf({ retry_after_ms: 30 * 24 * 3_600_000 })).toBe(30 * 24 * 3_600_000);
  });
});

describe('timerDelay', () => {
  it('caps a delay at the longest a timer takes, which would otherwise fire at once', () => {
    expect(timerDelay(30 * 24 * 3_600_000)).toBe(2 ** 31 - 1);
    expect(timerDelay(250)).toBe(250);
  });
});
