import { metric, query, refusePoison, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, sleep, startHarness } from './support.js';

/**
 * A batch whose processing throws: here a message PostgreSQL refuses, whose dead letter cannot be
 * written either for a while (a trigger refuses it). The messages of the batch not yet settled
 * must stay in hand and be tried again, not be dropped until JetStream redelivers them.
 */

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness('persistence_batch_failure');
});

afterAll(async () => {
  await harness?.close();
});

describe('a batch whose processing throws', () => {
  it('keeps the messages it had not settled and stores them, in order, once it can; none is redelivered', async () => {
    const env = { INBOUND_ACK_WAIT: '2s', INBOUND_MAX_DELIVER: '2' };
    // Started once for its migrations and stream, then stopped, so that the messages wait in the
    // stream and the next replica takes them as one batch.
    await (await harness.startPersistence(env)).stop();
    const url = harness.database.url;
    await refusePoison(url);
    await query(url, 'create table refuse_dead_letters (refused boolean)');
    await query(url, 'insert into refuse_dead_letters values (true)');
    await query(
      url,
      `create function refuse_dead_letters() returns trigger language plpgsql as $$
        begin
          if exists (select 1 from refuse_dead_letters) then raise exception 'dead letters refused by a trigger'; end if;
          return new;
        end $$`,
    );
    await query(
      url,
      'create trigger refuse_dead_letters before insert on dead_letters for each row execute function refuse_dead_letters()',
    );

    const [session = 0] = await harness.createSessions(1);
    await harness.publish(session, 'good-1');
    await harness.publish(session, 'poison', 'POISON');
    await harness.publish(session, 'good-2');
    const persistence = await harness.startPersistence(env);

    // Longer than two deliveries' ack waits: a message dropped from hand twice is never delivered again.
    await sleep(7_000);
    expect((await harness.stored()).map((row) => row.client_msg_id)).toEqual(['good-1']);
    expect(persistence.logs.some((line) => line.includes('processing a batch failed'))).toBe(true);

    await query(url, 'delete from refuse_dead_letters');
    await waitFor(async () => (await harness.stored()).length >= 2, 15_000, 'good-2 to be stored');
    await waitFor(async () => (await harness.deadLetters()) >= 1, 15_000, 'the poison to be dead-lettered');
    await sleep(1_000);
    expect(await harness.stored()).toEqual([
      { session_id: session, seq: 1, client_msg_id: 'good-1' },
      { session_id: session, seq: 2, client_msg_id: 'good-2' },
    ]);
    expect(await query(url, 'select client_msg_id from dead_letters')).toEqual([{ client_msg_id: 'poison' }]);
    expect(await metric(persistence, 'switchboard_persistence_redeliveries_total')).toBe(0);
  }, 60_000);
});
