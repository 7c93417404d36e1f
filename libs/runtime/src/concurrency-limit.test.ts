import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConcurrencyLimitError, createConcurrencyLimit } from './concurrency-limit.js';

/** A piece of work that runs until `finish()` (or `fail()`) is called. */
function gate<T = void>() {
  let finish!: (value: T) => void;
  let fail!: (error: unknown) => void;
  const done = new Promise<T>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  let started = false;
  return {
    work: () => {
      started = true;
      return done;
    },
    get started() {
      return started;
    },
    finish,
    fail,
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

afterEach(() => {
  vi.useRealTimers();
});

describe('createConcurrencyLimit', () => {
  it('runs at most `concurrency` at once and the rest in the order they came', async () => {
    const limit = createConcurrencyLimit({ concurrency: 2 });
    const gates = Array.from({ length: 5 }, () => gate<number>());
    const results = gates.map((g, index) => limit.run(g.work).then((value) => [index, value]));
    const firstOutcome = results[0]?.catch((error: unknown) => error);
    await settle();
    expect(gates.map((g) => g.started)).toEqual([true, true, false, false, false]);
    expect([limit.running, limit.waiting]).toEqual([2, 3]);

    gates[1]?.finish(1);
    await settle();
    expect(gates.map((g) => g.started)).toEqual([true, true, true, false, false]);
    // A piece of work that fails gives its slot back too.
    gates[0]?.fail(new Error('boom'));
    await settle();
    expect(gates.map((g) => g.started)).toEqual([true, true, true, true, false]);
    expect(await firstOutcome).toEqual(new Error('boom'));

    for (const [index, g] of gates.entries()) g.finish(index);
    expect(await Promise.all(results.slice(1))).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 4],
    ]);
    expect([limit.running, limit.waiting]).toEqual([0, 0]);
  });

  it('refuses at once, without running it, what comes when `maxWaiting` already wait', async () => {
    const limit = createConcurrencyLimit({ concurrency: 1, maxWaiting: 1 });
    const first = gate();
    const second = gate();
    const third = gate();
    const running = limit.run(first.work);
    const waiting = limit.run(second.work);
    const refused = limit.run(third.work);
    await expect(refused).rejects.toBeInstanceOf(ConcurrencyLimitError);
    await expect(refused).rejects.toMatchObject({ reason: 'queue_full' });
    expect(third.started).toBe(false);

    first.finish();
    second.finish();
    await Promise.all([running, waiting]);
    expect(second.started).toBe(true);
    expect([limit.running, limit.waiting]).toEqual([0, 0]);
  });

  it('with `maxWaiting` 0, runs only what finds a free slot', async () => {
    const limit = createConcurrencyLimit({ concurrency: 1, maxWaiting: 0 });
    const first = gate();
    const running = limit.run(first.work);
    await expect(limit.run(async () => 'late')).rejects.toMatchObject({ reason: 'queue_full' });
    first.finish();
    await running;
    expect(await limit.run(async () => 'free')).toBe('free');
  });

  it('refuses what waited `maxWaitMs` for a slot, without running it, and keeps the line moving', async () => {
    vi.useFakeTimers();
    const limit = createConcurrencyLimit({ concurrency: 1, maxWaitMs: 1_000 });
    const first = gate();
    const early = gate();
    const late = gate();
    const running = limit.run(first.work);
    const earlyRun = limit.run(early.work);
    vi.advanceTimersByTime(600);
    const lateRun = limit.run(late.work);
    const earlyOutcome = earlyRun.catch((error: unknown) => error);

    vi.advanceTimersByTime(500);
    expect(await earlyOutcome).toMatchObject({ reason: 'waited_too_long' });
    expect(early.started).toBe(false);
    expect(limit.waiting).toBe(1);

    // The one still within its wait gets the slot when it is freed, and its timer no longer counts.
    first.finish();
    await running;
    await vi.advanceTimersByTimeAsync(0);
    expect(late.started).toBe(true);
    vi.advanceTimersByTime(5_000);
    late.finish();
    await lateRun;
    expect([limit.running, limit.waiting]).toEqual([0, 0]);
  });

  it('refuses a concurrency below 1', () => {
    expect(() => createConcurrencyLimit({ concurrency: 0 })).toThrow(RangeError);
  });
});
