import { describe, expect, it } from 'vitest';
import { growth } from '../src/load.js';

const readings = (entries: [number, number][]) => new Map(entries);
const seconds = (value: number) => value;

describe('growth', () => {
  it('adds what each process used between the readings', () => {
    expect(
      growth(
        readings([
          [1, 2],
          [2, 5],
        ]),
        readings([
          [1, 3],
          [2, 7.5],
        ]),
        seconds,
      ),
    ).toBe(3.5);
  });

  it('counts a process that ended in between only while both readings saw it: not at all', () => {
    // Backend 2 closed: its 5 s before the window are not taken off the sum.
    expect(
      growth(
        readings([
          [1, 2],
          [2, 5],
        ]),
        readings([[1, 3]]),
        seconds,
      ),
    ).toBe(1);
  });

  it('counts a process that started in between whole: it did all its work in the window', () => {
    // Backend 3, opened by the pool during the window, used 0.4 s.
    expect(
      growth(
        readings([[1, 2]]),
        readings([
          [1, 3],
          [3, 0.4],
        ]),
        seconds,
      ),
    ).toBeCloseTo(1.4);
  });

  it('has nothing to say without a first reading', () => {
    expect(growth(undefined, readings([[1, 3]]), seconds)).toBeUndefined();
  });
});
