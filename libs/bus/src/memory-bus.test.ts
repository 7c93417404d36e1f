import { Writable } from 'node:stream';
import { createLogger } from '@switchboard/logging';
import { describe, expect, it } from 'vitest';
import { createMemoryBus } from './memory-bus.js';

const bytes = (value: string) => new TextEncoder().encode(value);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

describe('the in-memory bus', () => {
  it('logs a subscription handler that throws, and goes on delivering', async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(...String(chunk).split('\n').filter(Boolean));
        callback();
      },
    });
    const bus = createMemoryBus({ logger: createLogger({ name: 'memory-bus-test', level: 'error', destination }) });
    const seen: string[] = [];
    await bus.subscribe('events.>', (data) => {
      seen.push(text(data));
      if (seen.length === 1) throw new Error('a handler bug');
    });
    // Thrown from the bus's microtask, the error was uncaught: in the all-in-one process, the end of it.
    bus.publish('events.one', bytes('first'));
    bus.publish('events.two', bytes('second'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual(['first', 'second']);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({
      msg: 'subscription handler threw',
      subject: 'events.one',
      err: { message: 'a handler bug' },
    });
    await bus.close();
  });

  it('takes messages of any size', () => {
    expect(createMemoryBus().maxPayload()).toBe(Number.POSITIVE_INFINITY);
  });
});
