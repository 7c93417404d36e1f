import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { createTurnQueue, termTakesReason } from './nats-bus.js';

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

describe('createTurnQueue', () => {
  it('runs the jobs queued in one turn together, in order, after that turn and before the next', async () => {
    const inTurn = createTurnQueue();
    const ran: string[] = [];
    inTurn(() => ran.push('a'));
    await Promise.resolve();
    inTurn(() => ran.push('b'));
    expect(ran).toEqual([]);
    await nextTurn();
    expect(ran).toEqual(['a', 'b']);
    inTurn(() => ran.push('c'));
    await nextTurn();
    expect(ran).toEqual(['a', 'b', 'c']);
  });

  it('runs a job queued by a running job in the following turn', async () => {
    const inTurn = createTurnQueue();
    const ran: string[] = [];
    inTurn(() => {
      ran.push('first');
      inTurn(() => ran.push('second'));
    });
    await nextTurn();
    expect(ran).toEqual(['first']);
    await nextTurn();
    expect(ran).toEqual(['first', 'second']);
  });
});
