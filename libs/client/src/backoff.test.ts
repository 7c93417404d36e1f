import { describe, expect, it } from 'vitest';
import { backoffDelay } from './backoff.js';

const options = { minMs: 250, maxMs: 10_000 };
/** Just below 1: the top of the range Math.random can return. */
const top = () => 1 - Number.EPSILON;

describe('backoffDelay', () => {
  it('doubles the ceiling per attempt, from minMs up to maxMs', () => {
    const ceilings = Array.from({ length: 9 }, (_, attempt) => backoffDelay(attempt, options, top) + 1);
    expect(ceilings).toEqual([250, 500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000]);
  });

  it('draws the delay anywhere from 0 to the ceiling (full jitter)', () => {
    expect(backoffDelay(3, options, () => 0)).toBe(0);
    expect(backoffDelay(3, options, () => 0.5)).toBe(1_000);
    expect(backoffDelay(20, options, () => 0.25)).toBe(2_500);
  });

  it('stays within bounds with the real random source and spreads the delays', () => {
    for (let attempt = 0; attempt < 40; attempt++) {
      const ceiling = Math.min(options.maxMs, options.minMs * 2 ** attempt);
      const delays = Array.from({ length: 200 }, () => backoffDelay(attempt, options));
      for (const delay of delays) {
        expect(Number.isInteger(delay)).toBe(true);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(ceiling);
      }
      expect(new Set(delays).size).toBeGreaterThan(20);
    }
  });

  it('copes with huge and negative attempt numbers', () => {
    expect(backoffDelay(10_000, options, top)).toBe(9_999);
    expect(backoffDelay(-5, options, top)).toBe(249);
  });
});
