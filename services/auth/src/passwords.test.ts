import { ConcurrencyLimitError } from '@switchboard/runtime';
import { describe, expect, it } from 'vitest';
import { createPasswordHasher } from './passwords.js';

describe('createPasswordHasher', () => {
  it('hashes a few at a time, lets a bounded number wait, and refuses the rest at once', async () => {
    const hasher = createPasswordHasher({ concurrency: 2, maxWaiting: 3 });
    const outcomes = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => hasher.hash(`password-${i}`)));
    const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(5);
    expect(refused).toHaveLength(3);
    for (const outcome of refused) expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(ConcurrencyLimitError);
    expect(hasher.waiting).toBe(0);

    // Every slot came back: as many again go through.
    const again = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => hasher.hash(`again-${i}`)));
    expect(again.every((outcome) => outcome.status === 'fulfilled')).toBe(true);
  });

  it('checks passwords against their hashes through the same slots, a failed check included', async () => {
    const hasher = createPasswordHasher({ concurrency: 1, maxWaiting: 1 });
    const hash = await hasher.hash('correct horse');
    const [right, wrong, busy] = await Promise.allSettled([
      hasher.verify(hash, 'correct horse'),
      hasher.verify(hash, 'wrong horse'),
      hasher.verify(hash, 'third in line'),
    ]);
    expect(right).toEqual({ status: 'fulfilled', value: true });
    expect(wrong).toEqual({ status: 'fulfilled', value: false });
    expect(busy).toMatchObject({ status: 'rejected', reason: { reason: 'queue_full' } });
    expect(await hasher.verify('not a hash', 'anything')).toBe(false);
  });
});
