import { metric, TEST_NATS_URL, waitFor } from '@switchboard/testing';
import { connect } from 'nats';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support.js';

/**
 * The inbound stream deleted while persistence holds messages it has not stored yet (their
 * batch waits for a row lock): the stream it creates again numbers its messages from 1, the same
 * sequences as those held.
 */

let harness: Harness;
let holder: pg.Client | undefined;

beforeAll(async () => {
  harness = await startHarness('persistence_stream_recreated');
});

afterAll(async () => {
  await holder?.end().catch(() => undefined);
  await harness?.close();
});

describe('an inbound stream deleted and created again while messages are held', () => {
  it('stores the messages it held and the new ones with the same sequences, each once', async () => {
    const persistence = await harness.startPersistence({ BATCH_MAX: '2' });
    const [locked = 0, other = 0] = await harness.createSessions(2);
    holder = new pg.Client({ connectionString: harness.database.url });
    await holder.connect();
    await holder.query('begin');
    await holder.query('select id from sessions where id = $1 for update', [locked]);

    // Sequences 1 and 2 go in the batch that waits for the lock; 3 to 5 are held behind it.
    await harness.publish(locked, 'held-1');
    for (let i = 2; i <= 5; i++) await harness.publish(other, `held-${i}`);
    // Delivered to the replica (none pending in the stream) and not acked.
    await waitFor(
      async () => (await metric(persistence, 'switchboard_persistence_consumer_pending_messages')) === 0,
      10_000,
      'all delivered',
    );
    await new Promise((resolve) => setTimeout(resolve, 1_000));

    const nc = await connect({ servers: TEST_NATS_URL });
    try {
      await (await nc.jetstreamManager()).streams.delete(harness.subjects.inboundStream);
    } finally {
      await nc.close();
    }
    // Persistence creates the stream again; the new messages take sequences 1 to 5 once more.
    await waitFor(
      async () => {
        try {
          await harness.publish(other, 'new-1');
          return true;
        } catch {
          return false;
        }
      },
      30_000,
      'the stream to be created again',
    );
    for (let i = 2; i <= 5; i++) await harness.publish(other, `new-${i}`);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await holder.query('rollback');

    const expected = ['held-1', 'held-2', 'held-3', 'held-4', 'held-5', 'new-1', 'new-2', 'new-3', 'new-4', 'new-5'];
    // Before, the new messages 3 to 5 replaced held-3 to held-5, which no stream held any more.
    await waitFor(async () => (await harness.stored()).length >= expected.length, 20_000, 'every message to be stored').catch(
      () => undefined,
    );
    // Each once, in the order published, numbered from 1 in each session.
    const stored = await harness.stored();
    const inSession = (sessionId: number) => stored.filter((row) => row.session_id === sessionId);
    expect(inSession(locked).map((row) => [row.seq, row.client_msg_id])).toEqual([[1, 'held-1']]);
    expect(inSession(other).map((row) => [row.seq, row.client_msg_id])).toEqual(expected.slice(1).map((id, index) => [index + 1, id]));
    expect(await harness.deadLetters()).toBe(0);
  }, 90_000);
});
