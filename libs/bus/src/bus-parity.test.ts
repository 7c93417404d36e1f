import { createLogger } from '@switchboard/logging';
import { BusErrorCode, createSubjects } from '@switchboard/protocol';
import { TEST_NATS_URL } from '@switchboard/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { type Bus, BusError } from './bus.js';
import { createMemoryBus } from './memory-bus.js';
import { connectNatsBus } from './nats-bus.js';

/**
 * What the one-process mode (the in-memory bus) and the services (NATS) must do alike: code
 * written and tested against one runs on the other.
 */

const logger = createLogger({ name: 'bus-parity-test', level: 'silent' });
const prefix = `parity-${process.pid}`;
const opened: Bus[] = [];

const nats = () => connectNatsBus({ servers: [TEST_NATS_URL], name: 'bus-parity-test', subjects: createSubjects(prefix), logger });
/** Each bus, and how a server and a client share it: one in-memory bus is one process; NATS takes two connections. */
const buses: [string, () => Promise<Bus>, (open: () => Promise<Bus>) => Promise<[Bus, Bus]>][] = [
  [
    'in-memory',
    async () => createMemoryBus({ logger }),
    async (open) => {
      const one = await open();
      return [one, one];
    },
  ],
  ['NATS', nats, async (open) => [await open(), await open()]],
];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((bus) => bus.close().catch(() => undefined)));
});

const failureOf = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
const expectUnavailable = (error: unknown) => {
  expect(error).toBeInstanceOf(BusError);
  expect((error as BusError).code).toBe(BusErrorCode.Unavailable);
};

describe.each(buses)('the %s bus', (_name, open, pair) => {
  const bus = async () => {
    const opening = await open();
    opened.push(opening);
    return opening;
  };

  it('fails a request whose handler throws with `unavailable`: no answer came', async () => {
    const [server, client] = await pair(bus);
    const subject = `${prefix}.failing.${Math.random().toString(36).slice(2)}`;
    await server.addService({
      name: 'parity-test',
      version: '0.0.1',
      description: 'an endpoint that fails',
      endpoints: [
        {
          name: 'failing',
          subject,
          handler: async () => {
            throw new Error('a handler bug');
          },
        },
      ],
    });
    // Before, the in-memory bus passed the handler's own error on.
    expectUnavailable(await failureOf(client.request(subject, new Uint8Array(), 500)));
  });

  it('refuses requests, subscriptions and publishes once closed', async () => {
    const closed = await bus();
    await closed.close();
    // Before, the in-memory bus went on as if open.
    expectUnavailable(await failureOf(closed.request(`${prefix}.any`, new Uint8Array(), 500)));
    expectUnavailable(await failureOf(closed.subscribe(`${prefix}.any`, () => undefined)));
    expect(() => closed.publish(`${prefix}.any`, new Uint8Array())).toThrow();
  });

  it('delivers nothing to a subscription ended before the message came', async () => {
    const subscriber = await bus();
    const subject = `${prefix}.ended.${Math.random().toString(36).slice(2)}`;
    const seen: string[] = [];
    const subscription = await subscriber.subscribe(subject, (data) => seen.push(new TextDecoder().decode(data)));
    subscriber.publish(subject, new TextEncoder().encode('late'));
    subscription.unsubscribe();
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Before, the in-memory bus delivered what was published before the unsubscribe in the same turn.
    expect(seen).toEqual([]);
  });
});
