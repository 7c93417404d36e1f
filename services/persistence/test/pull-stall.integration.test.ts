import { createDb, type Database } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createMetricsRegistry } from '@switchboard/runtime';
import { TEST_NATS_URL, waitFor } from '@switchboard/testing';
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { migratePersistence } from '../src/app.js';
import type { PersistenceDatabase } from '../src/db/schema.js';
import { type InboundConsumer, startInboundConsumer } from '../src/inbound/consumer.js';
import { createPersistenceMetrics } from '../src/metrics.js';
import { type Harness, sleep, startHarness } from './support.js';

/**
 * A backlog held up by the database for longer than a pull's heartbeats allow. Through nats.js's
 * `consume()`, which the pump used before it pulled with `fetch()`, this queued another full pull
 * at every missed heartbeat while the pump did not read, and sent them all once it did, fetching
 * far more than asked for.
 */

const BATCH_MAX = 5;
/** Heartbeats every 1 s: under `consume()`, missed from about 2 s into a stall, another pull every second after. */
const PULL_EXPIRES_MS = 2_000;
const INBOUND = { ackWaitMs: 4_000, maxDeliver: 20, duplicateWindowMs: 120_000, maxAgeMs: 3_600_000, replicas: 1 };
const logger = createLogger({ name: 'pull-stall-test', level: process.env.TEST_LOG ?? 'silent' });

let harness: Harness;
let database: Database<PersistenceDatabase>;
let nc: NatsConnection;
let consumer: InboundConsumer | undefined;
let locker: pg.Client | undefined;

beforeAll(async () => {
  harness = await startHarness('persistence_pull_stall');
  database = createDb<PersistenceDatabase>({ url: harness.database.url, poolSize: 2, applicationName: 'pull-stall-test' });
  await migratePersistence(database.db, logger);
  await harness.bus.ensureInboundStream(INBOUND);
  nc = await connect({ servers: TEST_NATS_URL, name: 'pull-stall-test' });
});

afterEach(async () => {
  await unlock();
  await consumer?.stop();
  consumer = undefined;
});

afterAll(async () => {
  await nc?.close();
  await database?.destroy();
  await harness?.close();
});

const startConsumer = () =>
  startInboundConsumer({
    bus: harness.bus,
    inbound: INBOUND,
    db: database.db,
    subjects: harness.subjects,
    batchMax: BATCH_MAX,
    logger,
    metrics: createPersistenceMetrics(createMetricsRegistry('pull-stall-test')),
    pullExpiresMs: PULL_EXPIRES_MS,
  });

/** Every insert waits for this lock: the first batch is held up, and the pump stops pulling once it holds 6 × BATCH_MAX. */
async function lock(): Promise<void> {
  locker = new pg.Client({ connectionString: harness.database.url });
  await locker.connect();
  await locker.query('begin');
  await locker.query('lock table messages in access exclusive mode');
}

async function unlock(): Promise<void> {
  const held = locker;
  locker = undefined;
  if (!held) return;
  await held.query('rollback');
  await held.end();
}

/** Publishes `count` messages to a new session; returns their client_msg_ids in order. */
async function backlog(label: string, count: number): Promise<{ session: number; ids: string[] }> {
  const [session = 0] = await harness.createSessions(1);
  const ids = Array.from({ length: count }, (_, index) => `${label}-${index}`);
  await Promise.all(ids.map((id) => harness.publish(session, id)));
  return { session, ids };
}

async function storedIn(session: number) {
  return (await harness.stored()).filter((row) => row.session_id === session);
}

const consumerInfo = async () =>
  (await nc.jetstreamManager()).consumers.info(harness.subjects.inboundStream, harness.subjects.inboundConsumer);

describe('a backlog that waits for the database longer than a pull', () => {
  it('is fetched only as far as asked for, and stored once each, in order', async () => {
    const { session, ids } = await backlog('stall', 200);
    const deliveredBefore = (await consumerInfo()).delivered.consumer_seq;
    await lock();
    consumer = await startConsumer();
    await sleep(10_000);
    await unlock();

    // From the moment the database takes writes again: how much the consumer has out at most.
    let mostOut = 0;
    await waitFor(
      async () => {
        mostOut = Math.max(mostOut, (await consumerInfo()).num_ack_pending);
        return (await storedIn(session)).length === ids.length;
      },
      60_000,
      'every message to be stored',
    );
    const stored = await storedIn(session);
    expect(stored.map((row) => row.client_msg_id)).toEqual(ids);
    expect(stored.map((row) => row.seq)).toEqual(ids.map((_, index) => index + 1));
    // Held or asked for (6 × BATCH_MAX) and in hand (BATCH_MAX), and no more, give or take the
    // acks of one batch: NATS takes acks and pull requests on queues of their own, so a busy
    // server may count a batch acked before the next pull as still out after it. Under
    // `consume()`, every second of the stall had queued another pull of 2 × BATCH_MAX, all sent
    // at once when the database came back: the whole backlog was out at that moment.
    expect(mostOut).toBeLessThanOrEqual(8 * BATCH_MAX);
    // Nothing was delivered twice: everything fetched was held and kept alive.
    expect((await consumerInfo()).delivered.consumer_seq - deliveredBefore).toBe(ids.length);
  }, 90_000);

  it('stops while it waits for room to pull, handing back what it holds, and a new consumer stores it all once, in order', async () => {
    const { session, ids } = await backlog('stop', 100);
    await lock();
    const first = await startConsumer();
    await sleep(3_000);
    const stopping = first.stop();
    await unlock();
    await stopping;
    expect((await storedIn(session)).length).toBeLessThan(ids.length);

    consumer = await startConsumer();
    await waitFor(async () => (await storedIn(session)).length === ids.length, 60_000, 'every message to be stored');
    const stored = await storedIn(session);
    expect(stored.map((row) => row.client_msg_id)).toEqual(ids);
    expect(stored.map((row) => row.seq)).toEqual(ids.map((_, index) => index + 1));
  }, 90_000);
});
