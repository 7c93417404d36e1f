import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { deleteInboundStream, TEST_NATS_URL } from '@switchboard/testing';
import { connect } from 'nats';
import { afterEach, describe, expect, it } from 'vitest';
import { type Bus, ErrorAnswer } from './bus.js';
import { connectNatsBus } from './nats-bus.js';

const logger = createLogger({ name: 'nats-bus-handlers-test', level: 'silent' });
const prefix = `handlers-test-${process.pid}`;
const opened: Bus[] = [];

async function bus(name: string): Promise<Bus> {
  const connected = await connectNatsBus({
    servers: [TEST_NATS_URL],
    name,
    subjects: createSubjects(prefix),
    logger,
  });
  opened.push(connected);
  return connected;
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((each) => each.close().catch(() => undefined)));
});

const text = (data: Uint8Array) => new TextDecoder().decode(data);
const bytes = (value: string) => new TextEncoder().encode(value);

describe('the NATS bus', () => {
  it('answers the requests a service has taken before it stops, and only then may the connection close', async () => {
    const server = await bus('handlers-server');
    const client = await bus('handlers-client');
    const subject = `${prefix}.slow`;
    let started: () => void = () => undefined;
    const handlerStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    const service = await server.addService({
      name: 'handlers-test',
      version: '0.0.1',
      description: 'slow endpoint',
      endpoints: [
        {
          name: 'slow',
          subject,
          async handler(data) {
            started();
            await new Promise((resolve) => setTimeout(resolve, 300));
            return bytes(`answered ${text(data)}`);
          },
        },
      ],
    });
    const reply = client.request(subject, bytes('one'), 3_000);
    await handlerStarted;
    // A replica stopping: its service, then its connection.
    await service.stop();
    await server.close();
    expect(text(await reply)).toBe('answered one');
  });

  it('counts as errors of its endpoint the error answers and the replies NATS refused', async () => {
    const server = await bus('handlers-server');
    const client = await bus('handlers-client');
    const subject = `${prefix}.counted`;
    const name = `handlers-errors-${process.pid}`;
    const service = await server.addService({
      name,
      version: '0.0.1',
      description: 'errors counted',
      endpoints: [
        {
          name: 'counted',
          subject,
          async handler(data) {
            const kind = text(data);
            if (kind === 'error') return new ErrorAnswer(bytes('{"error":{"code":"unavailable","message":"down"}}'));
            // Over the server's 1 MiB max_payload: answered `internal` instead.
            if (kind === 'huge') return new Uint8Array(2 * 1024 * 1024);
            return bytes('fine');
          },
        },
      ],
    });
    for (const kind of ['fine', 'error', 'huge']) await client.request(subject, bytes(kind), 3_000);
    const nc = await connect({ servers: TEST_NATS_URL });
    try {
      const stats = [];
      for await (const entry of await nc.services.client().stats(name)) stats.push(entry);
      expect(stats).toHaveLength(1);
      expect(stats[0]?.endpoints?.[0]).toMatchObject({ num_requests: 3, data: { errors: 2 } });
    } finally {
      await nc.close();
      await service.stop();
    }
  });

  it('reads the service figures once per $SRV.STATS answer, not once per endpoint', async () => {
    const server = await bus('handlers-server');
    const name = `handlers-stats-${process.pid}`;
    let readings = 0;
    const service = await server.addService({
      name,
      version: '0.0.1',
      description: 'figures read once',
      endpoints: ['one', 'two', 'three'].map((endpoint) => ({
        name: endpoint,
        subject: `${prefix}.stats.${endpoint}`,
        handler: async () => bytes('fine'),
      })),
      // A reading that costs a round trip, as persistence's consumer info does.
      async stats() {
        readings++;
        await new Promise((resolve) => setTimeout(resolve, 20));
        return { readings };
      },
    });
    const nc = await connect({ servers: TEST_NATS_URL });
    try {
      for (const answer of [1, 2]) {
        const stats = [];
        for await (const entry of await nc.services.client().stats(name)) stats.push(entry);
        expect(stats).toHaveLength(1);
        expect(stats[0]?.endpoints?.map((endpoint) => endpoint.data)).toEqual([
          { readings: answer, errors: 0 },
          { readings: answer, errors: 0 },
          { readings: answer, errors: 0 },
        ]);
      }
      expect(readings).toBe(2);
    } finally {
      await nc.close();
      await service.stop();
    }
  });

  it("reports the server's max_payload, what the gateway measures a message against", async () => {
    // The shared server runs with NATS's default of 1 MiB.
    expect((await bus('handlers-limits')).maxPayload()).toBe(1024 * 1024);
  });

  it('goes on reading after a subscription handler throws', async () => {
    const server = await bus('handlers-server');
    const client = await bus('handlers-client');
    const subject = `${prefix}.echo`;
    const service = await server.addService({
      name: 'handlers-test',
      version: '0.0.1',
      description: 'echo endpoint',
      endpoints: [{ name: 'echo', subject, handler: async (data) => data }],
    });
    const seen: string[] = [];
    await client.subscribe(`${prefix}.events`, (data) => {
      seen.push(text(data));
      if (seen.length === 1) throw new Error('a handler bug');
    });
    server.publish(`${prefix}.events`, bytes('first'));
    server.publish(`${prefix}.events`, bytes('second'));
    // The client still reads its connection: its request is answered, the second event arrives.
    expect(text(await client.request(subject, bytes('still here'), 2_000))).toBe('still here');
    expect(seen).toEqual(['first', 'second']);
    await service.stop();
  });
});

describe('the inbound stream', () => {
  it("refuses to take over another installation's stream whose prefix differs only in - against _", async () => {
    const id = `${process.pid}x${Date.now().toString(36)}`;
    const inbound = { ackWaitMs: 30_000, maxDeliver: 20, duplicateWindowMs: 120_000, maxAgeMs: 3_600_000, replicas: 1 };
    const connectAs = (prefix: string) =>
      connectNatsBus({
        servers: [TEST_NATS_URL],
        name: prefix,
        subjects: createSubjects(prefix),
        logger,
      });
    const first = await connectAs(`coll-${id}`);
    const second = await connectAs(`coll_${id}`);
    opened.push(first, second);
    expect(createSubjects(`coll-${id}`).inboundStream).toBe(createSubjects(`coll_${id}`).inboundStream);
    try {
      await first.ensureInboundStream(inbound);
      await expect(second.ensureInboundStream(inbound)).rejects.toThrow(/another installation's subjects/);
      // The first installation's stream is untouched, and its own start still takes it.
      await first.ensureInboundStream(inbound);
    } finally {
      await deleteInboundStream(TEST_NATS_URL, `coll-${id}`);
    }
  });
});
