import { waitFor } from '@switchboard/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, query, sleep, startHarness } from './support.js';

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

describe('a stop while a batch waits for a row lock', () => {
  it('exits 0 well within 30 s, leaving the message to be stored once after', async () => {
    const persistence = await harness.startPersistence({ INBOUND_ACK_WAIT: '2s' });
    const [session = 0] = await harness.createSessions(1);
    holder = new pg.Client({ connectionString: harness.database.url });
    await holder.connect();
    await holder.query('begin');
    await holder.query('select id from sessions where id = $1 for update', [session]);

    await harness.publish(session, 'blocked');
    await waitFor(
      async () =>
        (
          await query(
            harness.database.url,
            `select 1 from pg_stat_activity where application_name = 'switchboard-persistence' and wait_event_type = 'Lock'`,
          )
        ).length > 0,
      10_000,
      "persistence's batch to wait for the row lock",
    );

    const started = performance.now();
    const exit = await persistence.stop(45_000);
    const stopMs = performance.now() - started;
    // Both in the message if it fails: before, about 30 s, and often exit 1 at the deadline.
    expect({ exit, seconds: Math.round(stopMs / 100) / 10 }).toMatchObject({ exit: 0 });
    expect(stopMs).toBeLessThan(20_000);
    expect(persistence.logs.some((line) => line.includes('did not finish in time'))).toBe(true);

    // Its statement was cancelled rather than left to commit once the lock is free.
    await holder.query('rollback');
    await sleep(500);
    expect(await harness.stored()).toEqual([]);

    // Redelivered to the next replica and stored once.
    await harness.startPersistence({ INBOUND_ACK_WAIT: '2s' });
    await waitFor(async () => (await harness.stored()).length > 0, 20_000, 'the message to be stored');
    await sleep(1_000);
    expect(await harness.stored()).toEqual([{ session_id: session, seq: 1, client_msg_id: 'blocked' }]);
    expect(await harness.deadLetters()).toBe(0);
  }, 90_000);
});
