import { describe, expect, it } from 'vitest';
import { termTakesReason } from './nats-bus.js';

describe('termTakesReason', () => {
  it('sends a reason with +TERM only to servers that understand it (2.10 and later)', () => {
    expect(termTakesReason('2.10.0')).toBe(true);
    expect(termTakesReason('2.11.4')).toBe(true);
    expect(termTakesReason('3.0.0')).toBe(true);
    expect(termTakesReason('2.9.10')).toBe(false);
    expect(termTakesReason('2.2.0')).toBe(false);
    expect(termTakesReason(undefined)).toBe(false);
  });
});
