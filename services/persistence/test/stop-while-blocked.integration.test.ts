import { createPersistenceClient } from '@switchboard/bus';
import { metric, query, TcpProxy, TEST_NATS_URL, waitFor } from '@switchboard/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failureOf, type Harness, sleep, startHarness } from './support.js';

/**
 * SIGTERM while the batch in hand waits for a row lock held elsewhere (another replica's
 * transaction, a manual fix). The process has 30 s to exit, and the statement's own timeout is
 * as long: the stop must not wait for it.
 */

let harness: Harness;
let holder: pg.Client | undefined;

beforeAll(async () => {
  harness = await startHarness('persistence_stop_blocked');
});

afterAll(async () => {
  await holder?.end().catch(() => undefined);
  await harness?.close();
});

/** Locks the session's row in a transaction of `holder`'s, as a forgotten `psql` would. */
async function lockSession(session: number): Promise<pg.Client> {
  await holder?.end().catch(() => undefined);
  const client = new pg.Client({ connectionString: harness.database.url });
  holder = client;
  await client.connect();
  await client.query('begin');
  await client.query('select id from sessions where id = $1 for update', [session]);
  return client;
}

/** Waits until a persistence batch waits for a row lock. */
async function batchWaitingForLock(): Promise<void> {
  await waitFor(
    async () =>
      (
        await query(
          harness.database.url,
          `select 1 from pg_stat_activity
           where datname = current_database() and application_name = 'switchboard-persistence' and wait_event_type = 'Lock'`,
        )
      ).length > 0,
    10_000,
    "persistence's batch to wait for the row lock",
  );
}

describe('a stop while a batch waits for a row lock', () => {
  it('exits 0 well within 30 s, leaving the message to be stored once after', async () => {
    const persistence = await harness.startPersistence({ INBOUND_ACK_WAIT: '2s' });
    const [session = 0] = await harness.createSessions(1);
    const lock = await lockSession(session);

    await harness.publish(session, 'blocked');
    await batchWaitingForLock();

    const started = performance.now();
    const exit = await persistence.stop(45_000);
    const stopMs = performance.now() - started;
    // Both in the message if it fails: before, about 30 s, and often exit 1 at the deadline.
    expect({ exit, seconds: Math.round(stopMs / 100) / 10 }).toMatchObject({ exit: 0 });
    expect(stopMs).toBeLessThan(20_000);
    expect(persistence.logs.some((line) => line.includes('did not finish in time'))).toBe(true);

    // Its statement was cancelled rather than left to commit once the lock is free.
    await lock.query('rollback');
    await sleep(500);
    expect(await harness.stored()).toEqual([]);

    // Redelivered to the next replica and stored once.
    const next = await harness.startPersistence({ INBOUND_ACK_WAIT: '2s' });
    await waitFor(async () => (await harness.stored()).length > 0, 20_000, 'the message to be stored');
    await sleep(1_000);
    expect(await harness.stored()).toEqual([{ session_id: session, seq: 1, client_msg_id: 'blocked' }]);
    expect(await harness.deadLetters()).toBe(0);
    expect(await next.stop()).toBe(0);
  }, 90_000);

  it('keeps what it holds alive until it hands it back, so another replica gets it once', async () => {
    const env = { INBOUND_ACK_WAIT: '2s' };
    const first = await harness.startPersistence(env);
    const [session = 0] = await harness.createSessions(1);
    const lock = await lockSession(session);
    await harness.publish(session, 'handed-back');
    await batchWaitingForLock();
    const second = await harness.startPersistence(env);

    // The stop waits 10 s for the batch, five ack waits. Before, the keep-alive stopped at once:
    // the message went to the second replica after 2 s, and again when the first one's nak came.
    expect(await first.stop(45_000)).toBe(0);
    await lock.query('rollback');
    await waitFor(
      async () => (await harness.stored()).some((row) => row.client_msg_id === 'handed-back'),
      20_000,
      'the message to be stored',
    );
    await sleep(1_000);
    expect((await harness.stored()).filter((row) => row.session_id === session)).toEqual([
      { session_id: session, seq: 1, client_msg_id: 'handed-back' },
    ]);
    expect(await metric(second, 'switchboard_persistence_redeliveries_total')).toBe(1);
    expect(await second.stop()).toBe(0);
  }, 90_000);

  it('is bounded too when a backlog holds back the pump, and every message is stored once after', async () => {
    // With batches of one, four held messages stop the pump until the stuck batch is done.
    const persistence = await harness.startPersistence({ INBOUND_ACK_WAIT: '2s', BATCH_MAX: '1' });
    const [session = 0] = await harness.createSessions(1);
    const lock = await lockSession(session);

    const ids = ['b-0', 'b-1', 'b-2', 'b-3', 'b-4', 'b-5', 'b-6'];
    for (const id of ids) await harness.publish(session, id);
    // The first batch waits for the lock, and the replica holds the rest, none acked.
    await batchWaitingForLock();
    await waitFor(
      async () => {
        const { pending, ackPending } = await harness.bus.inboundStats();
        return pending === 0 && ackPending === ids.length;
      },
      10_000,
      'the replica to hold every message',
    );

    const started = performance.now();
    const exit = await persistence.stop(45_000);
    const stopMs = performance.now() - started;
    expect({ exit, seconds: Math.round(stopMs / 100) / 10 }).toMatchObject({ exit: 0 });
    expect(stopMs).toBeLessThan(20_000);

    await lock.query('rollback');
    await harness.startPersistence({ INBOUND_ACK_WAIT: '2s' });
    await waitFor(
      async () => (await harness.stored()).filter((row) => row.session_id === session).length === ids.length,
      30_000,
      'the backlog to be stored',
    );
    // Each once, with gapless seqs. Their order is not the publish order: these were published
    // without waiting for acks, as no sender does (a sender has one message in flight), and the
    // ones handed back are redelivered alongside those never delivered.
    const stored = (await harness.stored()).filter((row) => row.session_id === session);
    expect(stored.map((row) => row.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(stored.map((row) => row.client_msg_id).sort()).toEqual(ids);
    expect(await harness.deadLetters()).toBe(0);
  }, 120_000);
});

describe('a stop while PostgreSQL and NATS both hang', () => {
  // A harness of its own: a replica the tests above left running would answer the request and take the message.
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness('persistence_stop_hung');
  });

  afterAll(async () => {
    await harness?.close();
  });

  it('exits 0 within the 30 s, with a batch and a request waiting on the database, and the message is stored once after', async () => {
    const database = await TcpProxy.toPostgres(harness.database.url);
    const nats = await TcpProxy.start({ host: new URL(TEST_NATS_URL).hostname, port: Number(new URL(TEST_NATS_URL).port || 4222) });
    try {
      const persistence = await harness.startPersistence({
        DATABASE_URL: database.url(harness.database.url),
        NATS_URL: nats.url(TEST_NATS_URL),
        INBOUND_ACK_WAIT: '2s',
      });
      const [session = 0] = await harness.createSessions(1);
      // Connections left open in the pool, for the request and the batch below to take.
      const client = createPersistenceClient(harness.bus, harness.subjects);
      await Promise.all([1, 2, 3].map((customer) => client.call('sessions.create', { customer_id: customer, subject: null })));
      await harness.publish(session, 'warm');
      await waitFor(async () => (await harness.stored()).length === 1, 10_000, 'the first message to be stored');

      // The database passes nothing: the request and the batch each wait on a statement that
      // would time out after 30 s.
      database.blackhole();
      const request = failureOf(client.call('sessions.create', { customer_id: 4, subject: null }));
      await harness.publish(session, 'hung');
      await waitFor(async () => (await harness.bus.inboundStats()).ackPending === 1, 10_000, 'the message to be in hand');
      await sleep(500);
      nats.blackhole();

      const started = performance.now();
      const exit = await persistence.stop(45_000);
      const stopMs = performance.now() - started;
      // Its bounds: the batch's 10 s beside the API's 2 + 10 s, then the bus's 3 s and the
      // database's 5 s, 20 s in all. Before, the batch and the API one after the other: 30 s,
      // and the process exited 1 at the deadline or a moment before it (29.6 s here).
      expect({ exit, seconds: Math.round(stopMs / 100) / 10 }).toMatchObject({ exit: 0 });
      expect(stopMs).toBeLessThan(25_000);
      expect(await request).toBeDefined();

      database.restore();
      nats.restore();
      await harness.startPersistence({ INBOUND_ACK_WAIT: '2s' });
      await waitFor(async () => (await harness.stored()).some((row) => row.client_msg_id === 'hung'), 20_000, 'the message to be stored');
      await sleep(1_000);
      expect((await harness.stored()).filter((row) => row.session_id === session)).toEqual([
        { session_id: session, seq: 1, client_msg_id: 'warm' },
        { session_id: session, seq: 2, client_msg_id: 'hung' },
      ]);
      expect(await harness.deadLetters()).toBe(0);
    } finally {
      await database.close();
      await nats.close();
    }
  }, 120_000);
});
