import { describe, expect, it } from 'vitest';
import { settlesWithin, valueWithin } from './settles-within.js';

const after = <T>(ms: number, value: T) => new Promise<T>((resolve) => setTimeout(resolve, ms, value));

describe('settlesWithin', () => {
  it('tells whether a promise settled in time, rejected ones included', async () => {
    expect(await settlesWithin(after(5, 'x'), 1_000)).toBe(true);
    expect(await settlesWithin(Promise.reject(new Error('no')), 1_000)).toBe(true);
    expect(await settlesWithin(after(1_000, 'x'), 20)).toBe(false);
  });
});

describe('valueWithin', () => {
  it('gives the value when it comes in time, and the fallback when it is late or fails', async () => {
    expect(await valueWithin(after(5, { pending: 3 }), 1_000, {})).toEqual({ pending: 3 });
    expect(await valueWithin(after(1_000, { pending: 3 }), 20, {})).toEqual({});
    expect(await valueWithin(Promise.reject(new Error('no responders')), 1_000, 'none')).toBe('none');
  });
});
