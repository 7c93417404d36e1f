import { randomUUID } from 'node:crypto';
import { createLogger } from '@switchboard/logging';
import { BusErrorCode, createSubjects } from '@switchboard/protocol';
import { deleteInboundStream, TcpProxy, TEST_NATS_URL, waitFor } from '@switchboard/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bus, DurableConsumer, DurableMessage } from './bus.js';
import { BusError } from './bus.js';
import { createMemoryBus } from './memory-bus.js';
import { connectNatsBus } from './nats-bus.js';

const INBOUND = { ackWaitMs: 30_000, maxDeliver: 20, duplicateWindowMs: 120_000, maxAgeMs: 3_600_000, replicas: 1 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every message a pull yields, settling none. */
async function pullFrom(pull: AsyncIterable<DurableMessage>): Promise<DurableMessage[]> {
  const taken: DurableMessage[] = [];
  for await (const msg of pull) taken.push(msg);
  return taken;
}

const pullAll = (consumer: DurableConsumer, maxMessages: number, expiresMs = 1_000) => pullFrom(consumer.fetch({ maxMessages, expiresMs }));

const failureOf = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  );

describe('the inbound consumer over NATS', () => {
  const prefix = `pull${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const subjects = createSubjects(prefix);
  let bus: Bus;
  let nc: NatsConnection;

  beforeAll(async () => {
    bus = await connectNatsBus({
      servers: [TEST_NATS_URL],
      name: 'inbound-consumer-test',
      subjects,
      logger: createLogger({ name: 'test', level: 'silent' }),
    });
    nc = await connect({ servers: TEST_NATS_URL });
    await bus.ensureInboundStream(INBOUND);
  });

  afterAll(async () => {
    await bus?.close();
    await nc?.close();
    await deleteInboundStream(TEST_NATS_URL, prefix);
  });

  const publish = (count: number, label: string) =>
    Promise.all(
      Array.from({ length: count }, (_, i) =>
        bus.publishDurable(subjects.inbound(1), new TextEncoder().encode(`${label}-${i}`), `${label}-${i}`, 5_000),
      ),
    );

  it('yields at most what a pull asks for, and the rest to the next pull', async () => {
    await publish(5, 'asked');
    const consumer = await bus.inboundConsumer();
    const first = await pullAll(consumer, 3);
    expect(first.map((msg) => new TextDecoder().decode(msg.data))).toEqual(['asked-0', 'asked-1', 'asked-2']);
    const second = await pullAll(consumer, 3);
    expect(second.map((msg) => new TextDecoder().decode(msg.data))).toEqual(['asked-3', 'asked-4']);
    for (const msg of [...first, ...second]) msg.ack();
  });

  it('tells a consumer deleted and created again while no pull waited, and no longer settles its messages', async () => {
    await publish(2, 'again');
    const consumer = await bus.inboundConsumer();
    const held = await pullAll(consumer, 1);
    expect(held).toHaveLength(1);
    const jsm = await nc.jetstreamManager();
    await jsm.consumers.delete(subjects.inboundStream, subjects.inboundConsumer);
    await bus.ensureInboundStream(INBOUND);
    await sleep(1_100);

    const error = await failureOf(pullAll(consumer, 10));
    expect(error).toBeInstanceOf(BusError);
    expect((error as BusError).code).toBe(BusErrorCode.Unavailable);
    // Its ack would reach the new consumer, which has not delivered the message yet.
    held[0]?.ack();
    const fresh = await bus.inboundConsumer();
    const again = await pullAll(fresh, 10);
    expect(again.map((msg) => new TextDecoder().decode(msg.data))).toEqual(['again-0', 'again-1']);
    for (const msg of again) msg.ack();
  });
});

describe('a pull the reconnect ended, after the consumer was made again meanwhile', () => {
  const prefix = `repull${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const subjects = createSubjects(prefix);
  const logger = createLogger({ name: 'test', level: 'silent' });

  afterAll(async () => {
    await deleteInboundStream(TEST_NATS_URL, prefix);
  });

  it('is not sent again to the new consumer: the pull ends, and the consumer is told gone', async () => {
    const proxy = await TcpProxy.start({ host: '127.0.0.1', port: Number(new URL(TEST_NATS_URL).port || 4222) });
    const cut = await connectNatsBus({ servers: [proxy.url(TEST_NATS_URL)], name: 'repull-cut', subjects, logger });
    const other = await connectNatsBus({ servers: [TEST_NATS_URL], name: 'repull-other', subjects, logger });
    try {
      await cut.ensureInboundStream(INBOUND);
      for (const id of ['before-0', 'before-1']) await other.publishDurable(subjects.inbound(1), new TextEncoder().encode(id), id, 5_000);
      const consumer = await cut.inboundConsumer();
      const taken: string[] = [];
      let ended: unknown;
      const pulling = (async () => {
        for await (const msg of consumer.fetch({ maxMessages: 10, expiresMs: 20_000 })) taken.push(new TextDecoder().decode(msg.data));
      })().then(
        () => (ended = 'ended'),
        (error: unknown) => (ended = error),
      );
      await waitFor(() => taken.length === 2, 5_000, 'the two messages');

      // The connection goes away; meanwhile the consumer is deleted and made again, and a message arrives.
      proxy.cut();
      const admin = await connect({ servers: TEST_NATS_URL });
      await (await admin.jetstreamManager()).consumers.delete(subjects.inboundStream, subjects.inboundConsumer);
      await admin.close();
      await other.ensureInboundStream(INBOUND);
      await other.publishDurable(subjects.inbound(1), new TextEncoder().encode('after'), 'after', 5_000);
      proxy.restore();

      // Before, the pull was sent again at once, to the new consumer, which delivered everything
      // again (the held messages' acks then settling its copies), and nothing said it was another.
      await waitFor(() => ended !== undefined || taken.length > 2, 15_000, 'the pull to end or take more');
      await pulling;
      expect(taken).toEqual(['before-0', 'before-1']);
      const error = await failureOf(pullAll(consumer, 10));
      expect(error).toBeInstanceOf(BusError);
      expect((error as BusError).code).toBe(BusErrorCode.Unavailable);
    } finally {
      await cut.close();
      await other.close();
      await proxy.close();
    }
  }, 30_000);
});

describe('the inbound consumer in memory', () => {
  it('yields at most what a pull asks for, ends a pull at its expiry, and redelivers what was nak’d', async () => {
    const bus = createMemoryBus();
    await bus.ensureInboundStream(INBOUND);
    for (const id of ['a', 'b', 'c']) await bus.publishDurable('in', new TextEncoder().encode(id), id, 1_000);
    const consumer = await bus.inboundConsumer();
    const first = await pullAll(consumer, 2);
    expect(first.map((msg) => msg.seq)).toEqual([1, 2]);
    first[0]?.nak();
    first[1]?.ack();
    const second = await pullAll(consumer, 5, 1_000);
    expect(second.map((msg) => msg.seq)).toEqual([1, 3]);
    await bus.close();
  });

  it('ends each of two waiting pulls by its own close', async () => {
    const bus = createMemoryBus();
    const consumer = await bus.inboundConsumer();
    const one = consumer.fetch({ maxMessages: 1, expiresMs: 60_000 });
    const two = consumer.fetch({ maxMessages: 1, expiresMs: 60_000 });
    const [takingOne, takingTwo] = [pullFrom(one), pullFrom(two)];
    await sleep(10);
    await one.close();
    expect(await takingOne).toEqual([]);
    await bus.publishDurable('in', new TextEncoder().encode('x'), 'x', 1_000);
    expect((await takingTwo).map((msg) => msg.seq)).toEqual([1]);
    await bus.close();
  });
});
