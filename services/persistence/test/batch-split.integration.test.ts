import { metric, query, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, sleep, startHarness } from './support.js';

/**
 * A batch that fails is split in halves, stored in order, until the message it failed for (if
 * any) is alone: one too large for the server is stored in smaller batches, not retried whole
 * for ever, and a message that cannot be stored costs a few statements, not one per message.
 */

/** Makes each stored message note its transaction, and returns the batches as committed. */
async function logBatches(url: string): Promise<() => Promise<string[][]>> {
  await query(url, 'create table batch_log (id bigserial, client_msg_id text, tx bigint)');
  await query(
    url,
    'create function log_batch() returns trigger language plpgsql as $$ begin insert into batch_log (client_msg_id, tx) values (new.client_msg_id, txid_current()); return new; end $$',
  );
  await query(url, 'create trigger log_batch after insert on messages for each row execute function log_batch()');
  return async () =>
    (
      await query<{ ids: string[] }>(url, 'select array_agg(client_msg_id order by id) as ids from batch_log group by tx order by min(id)')
    ).map((row) => row.ids);
}

/** Publishes `count` messages round-robin over `sessions`; returns each session's ids in publish order. */
async function publishBacklog(harness: Harness, sessions: number[], count: number, content = (id: string) => id) {
  const expected = new Map<number, string[]>(sessions.map((session) => [session, []]));
  for (let index = 0; index < count; index++) {
    const session = sessions[index % sessions.length] ?? 0;
    const id = `m-${index}`;
    expected.get(session)?.push(id);
    await harness.publish(session, id, content(id));
  }
  return expected;
}

async function expectStoredInOrder(harness: Harness, expected: Map<number, string[]>) {
  const stored = await harness.stored();
  for (const [session, ids] of expected) {
    const own = stored.filter((row) => row.session_id === session);
    expect(own.map((row) => row.client_msg_id)).toEqual(ids);
    expect(own.map((row) => row.seq)).toEqual(ids.map((_, index) => index + 1));
  }
}

describe.each([
  ['out_of_memory', `raise exception 'refused by a test trigger' using errcode = '53200'`],
  ['query_canceled', `raise exception 'refused by a test trigger' using errcode = '57014'`],
  // The backend ends under the statement, as one the kernel's OOM killer ends does: the
  // connection is lost (57P01 here), and the same batch would lose it again at every try.
  ['connection_lost', 'perform pg_terminate_backend(pg_backend_pid()); perform pg_sleep(5)'],
])('a batch refused for its size (%s)', (condition, refusal) => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness(`persistence_split_${condition}`);
  });

  afterAll(async () => {
    await harness?.close();
  });

  it('is stored in halves, in order, with nothing set aside; a single message meeting the error is retried', async () => {
    // Started once for its migrations and stream, then stopped: the backlog waits in the stream
    // and the next replica takes it in few batches: the first message alone, the rest together.
    await (await harness.startPersistence()).stop();
    const url = harness.database.url;
    const batches = await logBatches(url);
    // The server refuses any statement storing more than three messages, as one short of memory
    // (or past its statement timeout) for a large batch does. While `refuse_all` holds a row, it
    // refuses every statement, a single message's too.
    await query(url, 'create table refuse_all (refused boolean)');
    await query(
      url,
      `create function refuse_large() returns trigger language plpgsql as $$
        begin
          if exists (select 1 from refuse_all) or (select count(*) from added) > 3 then
            ${refusal};
          end if;
          return null;
        end $$`,
    );
    await query(
      url,
      'create trigger refuse_large after insert on messages referencing new table as added for each statement execute function refuse_large()',
    );
    const sessions = await harness.createSessions(3);
    const expected = await publishBacklog(harness, sessions, 14);
    const persistence = await harness.startPersistence();

    // Before, the batch of 14 was retried whole, for ever, and nothing was stored.
    await waitFor(async () => (await harness.stored()).length === 14, 20_000, 'the backlog to be stored');
    await expectStoredInOrder(harness, expected);
    const committed = await batches();
    expect(Math.max(...committed.map((batch) => batch.length))).toBeLessThanOrEqual(3);
    // Halves of halves (the replica takes the first message alone, then the other 13: 13 → 7 → 4 →
    // 2), not 14 single messages. The batch is retried whole once before it is split, its halves
    // not: one retry for each batch of more than three taken from the stream.
    expect(committed.length).toBeLessThan(14);
    const splits = await metric(persistence, 'switchboard_persistence_batch_splits_total', { reason: 'size' });
    expect(splits).toBeGreaterThan(0);
    expect(await metric(persistence, 'switchboard_persistence_store_retries_total')).toBeLessThanOrEqual(2);
    expect(await metric(persistence, 'switchboard_persistence_batch_splits_total', { reason: 'message' })).toBe(0);

    // A single message is not split or set aside: it is retried until the server takes it.
    const retried = await metric(persistence, 'switchboard_persistence_store_retries_total');
    await query(url, 'insert into refuse_all values (true)');
    const [lone = 0] = sessions;
    await harness.publish(lone, 'lone');
    await waitFor(
      async () => (await metric(persistence, 'switchboard_persistence_store_retries_total')) >= retried + 3,
      15_000,
      'the lone message to be retried',
    );
    await query(url, 'delete from refuse_all');
    await waitFor(async () => (await harness.stored()).length === 15, 15_000, 'the lone message to be stored');
    expect(await metric(persistence, 'switchboard_persistence_batch_splits_total', { reason: 'size' })).toBe(splits);
    expect(await harness.deadLetters()).toBe(0);
    expect(await metric(persistence, 'switchboard_persistence_messages_total', { outcome: 'dead_lettered' })).toBe(0);
    expect(await metric(persistence, 'switchboard_persistence_redeliveries_total')).toBe(0);
    await persistence.stop();
  }, 60_000);
});

describe('a batch with a message that cannot be stored', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness('persistence_split_poison');
  });

  afterAll(async () => {
    await harness?.close();
  });

  it('is split in halves down to that message, which alone is set aside, and the rest stored in order', async () => {
    await (await harness.startPersistence()).stop();
    const url = harness.database.url;
    const batches = await logBatches(url);
    await query(
      url,
      `create function refuse_poison() returns trigger language plpgsql as $$
        begin
          if new.content = 'POISON' then raise exception 'poison refused by a test trigger'; end if;
          return new;
        end $$`,
    );
    await query(url, 'create trigger refuse_poison before insert on messages for each row execute function refuse_poison()');
    const sessions = await harness.createSessions(2);
    const published = await publishBacklog(harness, sessions, 16, (id) => (id === 'm-11' ? 'POISON' : id));
    const expected = new Map([...published].map(([session, ids]) => [session, ids.filter((id) => id !== 'm-11')]));
    const persistence = await harness.startPersistence();

    await waitFor(async () => (await harness.deadLetters()) === 1, 20_000, 'the poison to be set aside');
    await waitFor(async () => (await harness.stored()).length === 15, 20_000, 'the rest to be stored');
    await sleep(500);
    await expectStoredInOrder(harness, expected);
    expect(await query(url, 'select client_msg_id from dead_letters')).toEqual([{ client_msg_id: 'm-11' }]);
    // The replica may take the first message alone (it starts a batch as soon as one arrives) and
    // the rest as one batch: 15 or 16 → 8 → 4 → 2 → 1, four splits, and the halves without the
    // poison stored whole. Before, the batch was stored one message at a time.
    const splits = await metric(persistence, 'switchboard_persistence_batch_splits_total', { reason: 'message' });
    expect(splits).toBeGreaterThan(0);
    expect(splits).toBeLessThanOrEqual(4);
    const committed = await batches();
    expect(committed.length).toBeLessThanOrEqual(6);
    expect(Math.max(...committed.map((batch) => batch.length))).toBeGreaterThanOrEqual(4);
    expect(await metric(persistence, 'switchboard_persistence_redeliveries_total')).toBe(0);
    await persistence.stop();
  }, 60_000);
});

describe('a stop while a half of a split batch is retried', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness('persistence_split_stop');
  });

  afterAll(async () => {
    await harness?.close();
  });

  it('hands back that half and the ones after it, at once and in order, to the next replica', async () => {
    // An ack wait far longer than the wait below: a message handed back to no one would wait it out.
    const env = { INBOUND_ACK_WAIT: '20s' };
    await (await harness.startPersistence(env)).stop();
    const url = harness.database.url;
    // A batch of several messages is refused (split, for a message's fault); `m1` alone is
    // refused as a serialization failure (retried) while `hold_m1` holds a row.
    await query(url, 'create table hold_m1 (held boolean)');
    await query(url, 'insert into hold_m1 values (true)');
    await query(
      url,
      `create function refuse_batches() returns trigger language plpgsql as $$
        begin
          if (select count(*) from added) > 1 then raise exception 'batches refused by a test trigger'; end if;
          if exists (select 1 from hold_m1) and exists (select 1 from added where client_msg_id = 'm1') then
            raise exception 'm1 held by a test trigger' using errcode = '40001';
          end if;
          return null;
        end $$`,
    );
    await query(
      url,
      'create trigger refuse_batches after insert on messages referencing new table as added for each statement execute function refuse_batches()',
    );
    const [other = 0, session = 0] = await harness.createSessions(2);
    // The replica takes the first message to arrive alone, and the two behind it as one batch.
    await harness.publish(other, 'first');
    await harness.publish(session, 'm1');
    await harness.publish(session, 'm2');
    const persistence = await harness.startPersistence(env);
    await waitFor(async () => (await metric(persistence, 'switchboard_persistence_store_retries_total')) >= 2, 15_000, 'm1 to be retried');

    expect(await persistence.stop(45_000)).toBe(0);
    // Before, m2 was stored while m1 was handed back.
    expect((await harness.stored()).filter((row) => row.session_id === session)).toEqual([]);

    await query(url, 'delete from hold_m1');
    const next = await harness.startPersistence(env);
    // Before, NATS redelivered the first message handed back to the pull the stop had closed,
    // and it came back only after the ack wait: m2 was stored first (twice delivered), m1 after.
    await waitFor(async () => (await harness.stored()).filter((row) => row.session_id === session).length === 2, 5_000, 'both');
    expect((await harness.stored()).filter((row) => row.session_id === session)).toEqual([
      { session_id: session, seq: 1, client_msg_id: 'm1' },
      { session_id: session, seq: 2, client_msg_id: 'm2' },
    ]);
    expect(await harness.deadLetters()).toBe(0);
    await next.stop();
  }, 90_000);
});
