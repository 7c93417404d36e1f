import { describe, expect, it, vi } from 'vitest';
import { Deadlines } from './deadlines.js';

function clocked(resolutionMs = 250) {
  let now = 10_000;
  const fired: string[] = [];
  const deadlines = new Deadlines<string>(
    (item) => fired.push(item),
    resolutionMs,
    () => now,
  );
  return {
    deadlines,
    fired,
    advanceTo(ms: number) {
      now = ms;
      deadlines.tick();
    },
  };
}

describe('Deadlines', () => {
  it('fires a deadline once its time has passed, never before, at most one resolution late', () => {
    const { deadlines, fired, advanceTo } = clocked();
    deadlines.set('a', 10_600);
    advanceTo(10_599);
    advanceTo(10_600);
    expect(fired).toEqual([]);
    advanceTo(10_600 + 250 + 1);
    expect(fired).toEqual(['a']);
    advanceTo(20_000);
    expect(fired).toEqual(['a']);
    expect(deadlines.size).toBe(0);
    deadlines.close();
  });

  it('moves a deadline that is set again, and forgets a deleted one', () => {
    const { deadlines, fired, advanceTo } = clocked();
    deadlines.set('moved', 10_300);
    deadlines.set('deleted', 10_300);
    deadlines.set('kept', 10_300);
    deadlines.set('moved', 12_000);
    deadlines.delete('deleted');
    advanceTo(11_000);
    expect(fired).toEqual(['kept']);
    advanceTo(12_251);
    expect(fired).toEqual(['kept', 'moved']);
    deadlines.close();
  });

  it('does not fire one that a callback deleted or moved, when both were due in the same slot', () => {
    let now = 10_000;
    const fired: string[] = [];
    const deadlines: Deadlines<string> = new Deadlines<string>(
      (item) => {
        fired.push(item);
        if (item === 'first') {
          deadlines.delete('deleted');
          deadlines.set('moved', 12_000);
        }
      },
      250,
      () => now,
    );
    for (const item of ['first', 'deleted', 'moved']) deadlines.set(item, 10_100);
    now = 10_300;
    deadlines.tick();
    // Before: both fired with 'first', and 'moved' fired again at its new time.
    expect(fired).toEqual(['first']);
    now = 12_251;
    deadlines.tick();
    expect(fired).toEqual(['first', 'moved']);
    expect(deadlines.size).toBe(0);
    deadlines.close();
  });

  it('fires a deadline set in the past at the next tick', () => {
    const { deadlines, fired, advanceTo } = clocked();
    advanceTo(15_000);
    deadlines.set('late', 1_000);
    expect(fired).toEqual([]);
    advanceTo(15_251);
    expect(fired).toEqual(['late']);
    deadlines.close();
  });

  it('fires many deadlines in time order across slots, each once', () => {
    const { deadlines, fired, advanceTo } = clocked(100);
    for (let i = 0; i < 1_000; i++) deadlines.set(`c${i}`, 10_000 + ((i * 7919) % 5_000));
    for (let t = 10_000; t <= 15_200; t += 37) advanceTo(t);
    expect(new Set(fired).size).toBe(1_000);
    const at = (item: string) => 10_000 + ((Number(item.slice(1)) * 7919) % 5_000);
    const slots = fired.map((item) => Math.ceil(at(item) / 100));
    expect(slots).toEqual([...slots].sort((a, b) => a - b));
    deadlines.close();
  });

  it('takes a clock stepped forward by a day without going through every slot passed, firing what fell due in order', () => {
    const { deadlines, fired, advanceTo } = clocked();
    const day = 24 * 3_600_000;
    deadlines.set('second', 10_000 + day / 2);
    deadlines.set('first', 10_500);
    deadlines.set('after', 10_000 + 2 * day);
    // Before, the tick looked up every 250 ms slot passed: 345,600 for a day, 126 million for a
    // clock left a year behind until NTP set it, which blocked the event loop for minutes.
    const lookups = vi.spyOn(Map.prototype, 'get');
    advanceTo(10_000 + day);
    const looked = lookups.mock.calls.length;
    lookups.mockRestore();
    expect(looked).toBeLessThanOrEqual(3);
    expect(fired).toEqual(['first', 'second']);
    deadlines.set('set-after-the-step', 10_000 + day);
    advanceTo(10_000 + day + 251);
    expect(fired).toEqual(['first', 'second', 'set-after-the-step']);
    expect(deadlines.size).toBe(1);
    deadlines.close();
  });

  it('fires deadlines set after the clock was stepped back at their time, not once it has caught up', () => {
    const { deadlines, fired, advanceTo } = clocked();
    const hour = 3_600_000;
    // The clock runs an hour ahead, a deadline fires, then NTP steps the clock back.
    deadlines.set('ahead', 10_000 + hour + 100);
    advanceTo(10_000 + hour + 400);
    expect(fired).toEqual(['ahead']);
    advanceTo(10_000);
    deadlines.set('after the step', 11_000);
    deadlines.set('later', 12_000);
    advanceTo(11_000);
    expect(fired).toEqual(['ahead']);
    // Before, it fired only once the clock was past the hour again.
    advanceTo(11_251);
    expect(fired).toEqual(['ahead', 'after the step']);
    advanceTo(12_251);
    expect(fired).toEqual(['ahead', 'after the step', 'later']);
    deadlines.close();
  });

  it('fires every due deadline when a callback throws, then throws its error', () => {
    let now = 10_000;
    const fired: string[] = [];
    const deadlines = new Deadlines<string>(
      (item) => {
        fired.push(item);
        if (item.startsWith('bad')) throw new Error(`${item} failed`);
      },
      250,
      () => now,
    );
    for (const item of ['bad-1', 'a', 'bad-2', 'b']) deadlines.set(item, 10_100);
    deadlines.set('later', 10_600);
    deadlines.set('not-yet', 20_000);
    now = 10_800;
    expect(() => deadlines.tick()).toThrow('bad-1 failed');
    expect(fired).toEqual(['bad-1', 'a', 'bad-2', 'b', 'later']);
    expect(deadlines.size).toBe(1);
    now = 20_300;
    deadlines.tick();
    expect(fired.at(-1)).toBe('not-yet');
    expect(deadlines.size).toBe(0);
    deadlines.close();
  });

  it('fires on its own timer, which stops when nothing is left', async () => {
    const fired: string[] = [];
    const deadlines = new Deadlines<string>((item) => fired.push(item), 20);
    deadlines.set('real', Date.now() + 30);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(fired).toEqual(['real']);
    expect(deadlines.size).toBe(0);
    deadlines.close();
  });
});
