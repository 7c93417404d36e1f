import { createPersistenceClient } from '@switchboard/bus';
import { metric, query, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failureOf, type Harness, sleep, startHarness } from './support.js';

/**
 * Refusals that are the database's, not the messages': the messages wait and are stored once the
 * database takes them, none set aside. Each test drives `messages`' inserts with a trigger.
 */

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness('persistence_database_refusals');
  // Started once for its migrations and stream.
  await (await harness.startPersistence()).stop();
});

afterAll(async () => {
  await harness?.close();
});

/** A row trigger on `messages` running `body` (PL/pgSQL) before each insert, under `name`. */
async function onInsert(name: string, body: string): Promise<void> {
  const url = harness.database.url;
  await query(url, `create function ${name}() returns trigger language plpgsql as $$ begin ${body} return new; end $$`);
  await query(url, `create trigger ${name} before insert on messages for each row execute function ${name}()`);
}

async function dropTrigger(name: string): Promise<void> {
  await query(harness.database.url, `drop trigger ${name} on messages`);
  await query(harness.database.url, `drop function ${name}()`);
}

describe('a refusal of the database rather than of a message', () => {
  it('keeps every message of the backlog while each statement is refused alike, and stores them in order after', async () => {
    // As when INSERT on messages is revoked from persistence's role, or a column is missing.
    await query(harness.database.url, 'create table refuse_all (refused boolean)');
    await query(harness.database.url, 'insert into refuse_all values (true)');
    await onInsert(
      'refuse_all',
      "if exists (select 1 from refuse_all) then raise exception using errcode = '42501', message = 'permission denied for table messages'; end if;",
    );
    const [session = 0] = await harness.createSessions(1);
    for (let i = 1; i <= 5; i++) await harness.publish(session, `m${i}`);
    const persistence = await harness.startPersistence();

    await waitFor(async () => (await metric(persistence, 'switchboard_persistence_store_retries_total')) >= 3, 15_000, 'retries');
    await sleep(1_000);
    // Before, each batch was split and every message dead-lettered and terminated: all five gone.
    expect(await harness.deadLetters()).toBe(0);
    expect(await harness.stored()).toEqual([]);

    await query(harness.database.url, 'delete from refuse_all');
    await waitFor(async () => (await harness.stored()).length >= 5, 15_000, 'the backlog to be stored');
    expect((await harness.stored()).map((row) => [row.seq, row.client_msg_id])).toEqual([
      [1, 'm1'],
      [2, 'm2'],
      [3, 'm3'],
      [4, 'm4'],
      [5, 'm5'],
    ]);
    expect(await harness.deadLetters()).toBe(0);
    await persistence.stop();
    await dropTrigger('refuse_all');
  }, 60_000);

  it('keeps the messages while its role may not log in (a credential rotated), and stores them in order once it may', async () => {
    // Roles are the server's, not the test database's: one of this run's own.
    const role = `persistence_rotated_${process.pid}`;
    const admin = harness.database.url;
    await query(admin, `create role ${role} login`);
    await query(admin, `grant all on all tables in schema public to ${role}`);
    await query(admin, `grant all on all sequences in schema public to ${role}`);
    const url = new URL(admin);
    url.username = role;
    const [session = 0] = await harness.createSessions(1);
    const persistence = await harness.startPersistence({ DATABASE_URL: url.toString() });
    try {
      await harness.publish(session, 'm1');
      await waitFor(async () => (await harness.stored()).some((row) => row.session_id === session), 15_000, 'the first message');
      // Its LOGIN revoked, and the connections it has ended: every new one is refused (28000).
      await query(admin, `alter role ${role} nologin`);
      await query(admin, `select pg_terminate_backend(pid) from pg_stat_activity where usename = '${role}'`);
      for (const id of ['m2', 'm3', 'm4']) await harness.publish(session, id);

      await waitFor(async () => (await metric(persistence, 'switchboard_persistence_store_retries_total')) >= 3, 15_000, 'retries');
      // Before: taken for the batch's fault, split and its messages set aside as dead letters,
      // each one lost wherever a connection already open took the dead letter.
      expect(await metric(persistence, 'switchboard_persistence_batch_splits_total', { reason: 'message' })).toBe(0);
      expect(await harness.deadLetters()).toBe(0);
      // A request meanwhile may be retried (before: `internal`, which is not).
      const client = createPersistenceClient(harness.bus, harness.subjects);
      expect(await failureOf(client.call('messages.history', { session_id: session, limit: 10 }))).toMatchObject({ code: 'unavailable' });

      await query(admin, `alter role ${role} login`);
      const inSession = async () => (await harness.stored()).filter((row) => row.session_id === session);
      await waitFor(async () => (await inSession()).length === 4, 15_000, 'the messages held');
      expect((await inSession()).map((row) => row.client_msg_id)).toEqual(['m1', 'm2', 'm3', 'm4']);
      expect(await harness.deadLetters()).toBe(0);
    } finally {
      await persistence.stop();
      await query(admin, `drop owned by ${role}`);
      await query(admin, `drop role ${role}`);
    }
  }, 60_000);

  it('stores a message whose unique violation comes after three other failed tries, rather than setting it aside', async () => {
    // Three serialization failures, then the unique violation a try meets when the statement it
    // abandoned (a lock timeout) committed the row meanwhile; then the insert goes through.
    await query(harness.database.url, 'create sequence insert_tries');
    await onInsert(
      'fail_then_collide',
      `declare try bigint := nextval('insert_tries');
       begin
         if try <= 3 then raise exception using errcode = '40001', message = 'could not serialize access'; end if;
         if try = 4 then raise exception using errcode = '23505', message = 'duplicate key value violates unique constraint'; end if;
       end;`,
    );
    const [session = 0] = await harness.createSessions(1);
    await harness.publish(session, 'lone');
    const persistence = await harness.startPersistence();

    await waitFor(async () => (await harness.stored()).some((row) => row.session_id === session), 15_000, 'the message to be stored');
    // Before: dead-lettered at the fourth try, the sender told it could not be stored.
    expect(await harness.deadLetters()).toBe(0);
    expect(await metric(persistence, 'switchboard_persistence_store_retries_total')).toBe(4);
    await persistence.stop();
    await dropTrigger('fail_then_collide');
  }, 60_000);

  it("advances a session's last_seq that is behind its stored seqs, and stores its next message after them", async () => {
    // As after a partial restore: the session's counter behind the messages it has.
    const [session = 0] = await harness.createSessions(1);
    await harness.publish(session, 'first');
    const persistence = await harness.startPersistence();
    await waitFor(async () => (await harness.stored()).some((row) => row.session_id === session), 15_000, 'the first message');
    await query(harness.database.url, `update sessions set last_seq = 0 where id = ${session}`);
    await harness.publish(session, 'second');

    // Before, the batch was retried until an operator repaired the session, and storage stopped
    // on the replica meanwhile (and, earlier still, the message was dead-lettered).
    await waitFor(async () => (await harness.stored()).filter((row) => row.session_id === session).length === 2, 15_000, 'the second');
    expect((await harness.stored()).filter((row) => row.session_id === session).map((row) => [row.seq, row.client_msg_id])).toEqual([
      [1, 'first'],
      [2, 'second'],
    ]);
    const [row] = await query<{ last_seq: string }>(harness.database.url, `select last_seq from sessions where id = ${session}`);
    expect(Number(row?.last_seq)).toBe(2);
    expect(await harness.deadLetters()).toBe(0);
    expect(await metric(persistence, 'switchboard_persistence_state_repairs_total', { constraint: 'messages_session_seq_key' })).toBe(1);
    expect(persistence.logs.some((line) => line.includes('"level":"error"') && line.includes('last_seq was behind'))).toBe(true);
    await persistence.stop();
  }, 60_000);

  it("advances the messages' id sequence that is behind the stored messages, and stores the next message", async () => {
    const [session = 0] = await harness.createSessions(1);
    const persistence = await harness.startPersistence();
    const before = Array.from({ length: 30 }, (_, index) => `before-${index}`);
    for (const id of before) await harness.publish(session, id);
    await waitFor(
      async () => (await harness.stored()).filter((row) => row.session_id === session).length === 30,
      15_000,
      'thirty messages',
    );
    // As after a cut-over by logical replication, which copies the rows but not the sequence.
    // The next id is this session's first message's.
    await query(
      harness.database.url,
      `select setval(pg_get_serial_sequence('messages', 'id'), (select min(id) from messages where session_id = ${session}), false)`,
    );
    await harness.publish(session, 'after');

    // Before, retried with backoff, each try taking the next id: thirty tries, over a minute, for
    // a sequence thirty behind, and for ever for one a cut-over left millions behind.
    await waitFor(async () => (await harness.stored()).filter((row) => row.session_id === session).length === 31, 15_000, 'the next');
    expect((await harness.stored()).filter((row) => row.session_id === session).map((row) => row.client_msg_id)).toEqual([
      ...before,
      'after',
    ]);
    expect(await harness.deadLetters()).toBe(0);
    expect(await metric(persistence, 'switchboard_persistence_state_repairs_total', { constraint: 'messages_pkey' })).toBe(1);
    await persistence.stop();
  }, 60_000);

  it.each([
    ['messages_session_client_msg_id_key', 'a copy another replica stored, after three tries', 3],
    ['an_operators_audit_key', "the message's own, at once", 0],
  ])(
    'sets a message aside for a unique violation of %s: %s',
    async (constraint, _, retries) => {
      const name = `refuse_${retries}`;
      await onInsert(name, `raise exception using errcode = '23505', constraint = '${constraint}', message = 'duplicate key value';`);
      const [session = 0] = await harness.createSessions(1);
      const before = await harness.deadLetters();
      await harness.publish(session, `refused-${retries}`);
      const persistence = await harness.startPersistence();

      await waitFor(async () => (await harness.deadLetters()) > before, 15_000, 'the dead letter');
      expect(await metric(persistence, 'switchboard_persistence_store_retries_total')).toBe(retries);
      await persistence.stop();
      await dropTrigger(name);
    },
    60_000,
  );
});
