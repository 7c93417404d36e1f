import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { untilAborted } from './until-aborted.js';

describe('untilAborted', () => {
  it("gives the promise's value, and keeps no listener on the signal once it settles", async () => {
    const controller = new AbortController();
    for (let i = 0; i < 1_000; i++) expect(await untilAborted(Promise.resolve(i), controller.signal)).toBe(i);
    await expect(untilAborted(Promise.reject(new Error('failed')), controller.signal)).rejects.toThrow('failed');
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('gives undefined at the abort, and at once on a signal already aborted', async () => {
    const controller = new AbortController();
    const waiting = untilAborted(new Promise<number>(() => undefined), controller.signal);
    controller.abort();
    await expect(waiting).resolves.toBeUndefined();
    await expect(untilAborted(Promise.resolve(1), controller.signal)).resolves.toBeUndefined();
  });
});
