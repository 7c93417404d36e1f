import { describe, expect, it, vi } from 'vitest';
import { Emitter } from './emitter.js';

interface Events {
  count: number;
  word: string;
}

describe('Emitter', () => {
  it('calls the listeners of an event in the order they were added, with the payload', () => {
    const emitter = new Emitter<Events>();
    const calls: string[] = [];
    emitter.on('count', (n) => calls.push(`a${n}`));
    emitter.on('count', (n) => calls.push(`b${n}`));
    emitter.on('word', (w) => calls.push(w));
    emitter.emit('count', 1);
    emitter.emit('word', 'hi');
    expect(calls).toEqual(['a1', 'b1', 'hi']);
  });

  it('does nothing for an event without listeners', () => {
    expect(() => new Emitter<Events>().emit('word', 'nobody')).not.toThrow();
  });

  it('stops calling a listener once its unsubscribe function is called', () => {
    const emitter = new Emitter<Events>();
    const listener = vi.fn();
    const off = emitter.on('count', listener);
    emitter.emit('count', 1);
    off();
    off();
    emitter.emit('count', 2);
    expect(listener).toHaveBeenCalledTimes(1);
    expect(emitter.listenerCount('count')).toBe(0);
  });

  it('treats the same function added twice as two listeners, each removed by its own unsubscribe', () => {
    const emitter = new Emitter<Events>();
    const listener = vi.fn();
    const offFirst = emitter.on('count', listener);
    emitter.on('count', listener);
    emitter.emit('count', 1);
    expect(listener).toHaveBeenCalledTimes(2);
    offFirst();
    emitter.emit('count', 2);
    expect(listener).toHaveBeenCalledTimes(3);
  });

  it('lets a listener unsubscribe others while an event is emitted, without skipping the current round', () => {
    const emitter = new Emitter<Events>();
    const second = vi.fn();
    let offSecond: () => void = () => undefined;
    emitter.on('count', () => offSecond());
    offSecond = emitter.on('count', second);
    emitter.emit('count', 1);
    emitter.emit('count', 2);
    expect(second).toHaveBeenCalledTimes(1);
  });

  it('reports a listener that throws and still calls the others', () => {
    const reported: unknown[] = [];
    const emitter = new Emitter<Events>((error) => reported.push(error));
    const after = vi.fn();
    const boom = new Error('boom');
    emitter.on('word', () => {
      throw boom;
    });
    emitter.on('word', after);
    emitter.emit('word', 'x');
    expect(reported).toEqual([boom]);
    expect(after).toHaveBeenCalledWith('x');
  });
});
