import { afterEach, describe, expect, it, vi } from 'vitest';
import { RollingSweep } from './rolling-sweep.js';

describe('RollingSweep', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('visits every item once per period, a slice per tick, never all at once', () => {
    vi.useFakeTimers();
    const visits = new Map<number, number>();
    const perTick: number[] = [];
    let thisTick = 0;
    const sweep = new RollingSweep<number>(
      1_000,
      (item) => {
        visits.set(item, (visits.get(item) ?? 0) + 1);
        thisTick++;
      },
      100,
    );
    for (let item = 0; item < 1_000; item++) sweep.add(item);
    for (let tick = 0; tick < 20; tick++) {
      vi.advanceTimersByTime(100);
      perTick.push(thisTick);
      thisTick = 0;
    }
    // Two periods: each item twice, 100 of them on every tick.
    expect([...visits.values()].every((count) => count === 2)).toBe(true);
    expect(visits.size).toBe(1_000);
    expect(perTick).toEqual(Array(20).fill(100));
    sweep.close();
  });

  it('stops visiting a deleted item and keeps visiting the rest', () => {
    vi.useFakeTimers();
    const visited: string[] = [];
    const sweep = new RollingSweep<string>(400, (item) => visited.push(item), 100);
    for (const item of ['a', 'b', 'c', 'd', 'e']) sweep.add(item);
    sweep.delete('c');
    expect(sweep.size).toBe(4);
    vi.advanceTimersByTime(400);
    expect(visited.sort()).toEqual(['a', 'b', 'd', 'e']);
    sweep.close();
  });

  it('adds an item once however often it is added', () => {
    const visited: string[] = [];
    const sweep = new RollingSweep<string>(200, (item) => visited.push(item), 100);
    sweep.add('a');
    sweep.add('a');
    sweep.tick();
    sweep.tick();
    expect(visited).toEqual(['a']);
    sweep.close();
  });

  it('is one slice, visited every period, when the period is shorter than a tick', () => {
    vi.useFakeTimers();
    const visited: number[] = [];
    const sweep = new RollingSweep<number>(200, (_item, now) => visited.push(now), 500);
    sweep.add(1);
    vi.advanceTimersByTime(199);
    expect(visited).toHaveLength(0);
    vi.advanceTimersByTime(1);
    vi.advanceTimersByTime(200);
    expect(visited).toHaveLength(2);
    sweep.close();
  });

  it('stops ticking when closed', () => {
    vi.useFakeTimers();
    let visits = 0;
    const sweep = new RollingSweep<number>(
      100,
      () => {
        visits++;
      },
      100,
    );
    sweep.add(1);
    vi.advanceTimersByTime(100);
    sweep.close();
    vi.advanceTimersByTime(1_000);
    expect(visits).toBe(1);
  });
});
