import { createDb, type Database } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createMetricsRegistry } from '@switchboard/runtime';
import { waitFor } from '@switchboard/testing';
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratePersistence } from '../src/app.js';
import type { PersistenceDatabase } from '../src/db/schema.js';
import { type InboundConsumer, startInboundConsumer } from '../src/inbound/consumer.js';
import { createPersistenceMetrics } from '../src/metrics.js';
import { type Harness, sleep, startHarness } from './support.js';

/**
 * A backlog held up by the database for longer than a pull's heartbeats allow: nats.js's
 * `consume()` queued another full pull at every missed heartbeat while the pump did not read, and
 * sent them all once it did, fetching far more than asked for.
 */

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const BATCH_MAX = 5;
const MESSAGES = 200;
/** Heartbeats every 1 s: missed from about 2 s into a stall, another pull every second after. */
const PULL_EXPIRES_MS = Number(process.env.PULL_EXPIRES ?? 2_000);
const STALL_MS = 10_000;
const logger = createLogger({ name: 'pull-stall-test', level: process.env.TEST_LOG ?? 'silent' });

let harness: Harness;
let database: Database<PersistenceDatabase>;
let nc: NatsConnection;
let consumer: InboundConsumer | undefined;

beforeAll(async () => {
  harness = await startHarness('persistence_pull_stall');
  database = createDb<PersistenceDatabase>({ url: harness.database.url, poolSize: 2, applicationName: 'pull-stall-test' });
  await migratePersistence(database.db, logger);
  nc = await connect({ servers: NATS_URL, name: 'pull-stall-test' });
});

afterAll(async () => {
  await consumer?.stop();
  await nc?.close();
  await database?.destroy();
  await harness?.close();
});

describe('a backlog that waits for the database longer than a pull', () => {
  it('is fetched only as far as asked for, and stored once each, in order', async () => {
    const inbound = { ackWaitMs: 4_000, maxDeliver: 20, duplicateWindowMs: 120_000, maxAgeMs: 3_600_000, replicas: 1 };
    await harness.bus.ensureInboundStream(inbound);
    const [session = 0] = await harness.createSessions(1);
    const ids = Array.from({ length: MESSAGES }, (_, index) => `stall-${index}`);
    await Promise.all(ids.map((id) => harness.publish(session, id)));

    // Every insert waits for this lock: the first batch is held up, and the pump stops once it holds 4 × BATCH_MAX.
    const locker = new pg.Client({ connectionString: harness.database.url });
    await locker.connect();
    await locker.query('begin');
    await locker.query('lock table messages in access exclusive mode');
    consumer = await startInboundConsumer({
      bus: harness.bus,
      inbound,
      db: database.db,
      subjects: harness.subjects,
      batchMax: BATCH_MAX,
      logger,
      metrics: createPersistenceMetrics(createMetricsRegistry('pull-stall-test')),
      pullExpiresMs: PULL_EXPIRES_MS,
    });
    await sleep(STALL_MS);
    await locker.query('rollback');
    await locker.end();

    // From the moment the database takes writes again: how much the consumer has out at most.
    const jsm = await nc.jetstreamManager();
    const info = () => jsm.consumers.info(harness.subjects.inboundStream, harness.subjects.inboundConsumer);
    let mostOut = 0;
    await waitFor(
      async () => {
        mostOut = Math.max(mostOut, (await info()).num_ack_pending);
        return (await harness.stored()).length === MESSAGES;
      },
      60_000,
      'every message to be stored',
    );
    const stored = await harness.stored();
    expect(stored.map((row) => row.client_msg_id)).toEqual(ids);
    expect(stored.map((row) => row.seq)).toEqual(ids.map((_, index) => index + 1));
    // Held (4 × BATCH_MAX), in hand (BATCH_MAX) and fetched ahead (2 × BATCH_MAX), and no more.
    // Before, every second of the stall had queued another pull of 2 × BATCH_MAX, all sent at
    // once when the database came back: the whole backlog was out at that moment.
    expect(mostOut).toBeLessThanOrEqual(7 * BATCH_MAX);
    // Nothing was delivered twice: what the client had fetched ahead was held and kept alive.
    expect((await info()).delivered.consumer_seq).toBe(MESSAGES);
  }, 90_000);
});
