import { prepared } from '@switchboard/db';
import type { InboundMessage, Message } from '@switchboard/protocol';
import { type Kysely, sql } from 'kysely';
import { toMessage } from '../db/message.repository.js';
import type { MessageRow } from '../db/message.table.js';
import type { PersistenceDatabase } from '../db/schema.js';

export type StoreOutcome =
  /** Stored now, with the next seq of its session. */
  | { kind: 'stored'; message: Message }
  /** Stored before (a client retry or a JetStream redelivery): the original message. */
  | { kind: 'duplicate'; message: Message }
  /** Can never be stored. */
  | { kind: 'rejected'; reason: string };

const keyOf = (sessionId: number, clientMsgId: string) => `${sessionId}:${clientMsgId}`;

/**
 * What the statement returns: the new messages' generated columns only (the rest is in the
 * input), whole rows for messages stored before, and the ids of sessions that do not exist.
 */
type BatchRow =
  | ({ kind: 'inserted' } & Pick<MessageRow, 'id' | 'session_id' | 'seq' | 'client_msg_id' | 'created_at'>)
  | ({ kind: 'existing' } & MessageRow)
  | { kind: 'missing'; session_id: number };

/**
 * Stores a batch of inbound messages in one statement (one round trip, its own transaction) and
 * returns an outcome per input, in input order. The values go in arrays, so the statement's text
 * is the same for every batch and is prepared once per connection.
 *
 * It is also planned once per connection (see PERSISTENCE_CONNECTION_SETTINGS), so its one plan
 * has to suit a batch of 1 and one of 500 alike, on tables of any size: every row it reads is
 * found by an index lookup per value (the lateral subqueries, and the update's join on the
 * sessions' primary key), never by reading a table whole. Planned per batch instead, a batch of
 * one cost PostgreSQL twice the CPU. Each lookup reads one row: an earlier form of the update,
 * which also matched each session against the array of all the batch's sessions, was planned as
 * a scan of `sessions` per session and made a batch of 500 cost 230 ms instead of 11.
 *
 * Seqs are gapless because each session's `last_seq` is read under its row lock (`for update`,
 * which re-reads the newest version after waiting) and advanced in the same statement as the
 * inserts; rows are locked in ascending id order (the sorted ids, looked up one after another) so
 * that concurrent batches (several replicas) never deadlock. New messages are numbered in input
 * order within their session, so a sender's messages get increasing seqs in the order they were
 * published. The unique (session_id, client_msg_id) makes retries and redeliveries return the
 * original message. The duplicate lookup reads the statement's snapshot: a copy committed by
 * another replica while this statement waited for a lock makes the insert fail with a unique
 * violation, and the batch is retried (see consumer.ts), when the lookup finds it.
 */
export async function storeBatch(db: Kysely<PersistenceDatabase>, inputs: readonly InboundMessage[]): Promise<StoreOutcome[]> {
  if (inputs.length === 0) return [];
  const sessionIds = [...new Set(inputs.map((m) => m.session_id))].sort((a, b) => a - b);
  const { rows } = await sql<BatchRow>`${prepared('store_batch')}
    with input as (
      select * from unnest(
        ${inputs.map((m) => m.session_id)}::bigint[], ${inputs.map((m) => m.client_msg_id)}::text[],
        ${inputs.map((m) => m.sender_id)}::bigint[], ${inputs.map((m) => m.sender_role)}::text[],
        ${inputs.map((m) => m.content)}::text[]
      ) with ordinality as t(session_id, client_msg_id, sender_id, sender_role, content, ord)
    ),
    locked as (
      select s.id, s.last_seq from unnest(${sessionIds}::bigint[]) as u(id) cross join lateral (
        select id, last_seq from sessions where id = u.id for update
      ) s
    ),
    existing as (
      select e.* from (select distinct session_id, client_msg_id from input) k cross join lateral (
        select m.id, m.session_id, m.seq, m.sender_id, m.sender_role, m.content, m.client_msg_id, m.created_at
        from messages m where m.session_id = k.session_id and m.client_msg_id = k.client_msg_id offset 0
      ) e
    ),
    firsts as (
      select distinct on (session_id, client_msg_id) * from input order by session_id, client_msg_id, ord
    ),
    fresh as (
      select f.session_id, f.client_msg_id, f.sender_id, f.sender_role, f.content,
             l.last_seq + row_number() over (partition by f.session_id order by f.ord) as seq
      from firsts f join locked l on l.id = f.session_id
      where not exists (select 1 from existing e where e.session_id = f.session_id and e.client_msg_id = f.client_msg_id)
    ),
    inserted as (
      insert into messages (session_id, seq, sender_id, sender_role, content, client_msg_id)
      select session_id, seq, sender_id, sender_role, content, client_msg_id from fresh
      returning id, session_id, seq, client_msg_id, created_at
    ),
    advanced as (
      update sessions s set last_seq = f.last
      from (select session_id, max(seq) as last from fresh group by session_id) f
      where s.id = f.session_id
      returning s.id
    )
    select 'inserted' as kind, i.id, i.session_id, i.seq, null as sender_id, null as sender_role, null as content, i.client_msg_id, i.created_at
    from inserted i
    union all
    select 'existing', e.id, e.session_id, e.seq, e.sender_id, e.sender_role, e.content, e.client_msg_id, e.created_at from existing e
    union all
    select 'missing', null, s.session_id, null, null, null, null, null, null
    from (select distinct session_id from input) s where not exists (select 1 from locked l where l.id = s.session_id)`.execute(db);

  const firstInput = new Map<string, InboundMessage>();
  for (const input of inputs) {
    const key = keyOf(input.session_id, input.client_msg_id);
    if (!firstInput.has(key)) firstInput.set(key, input);
  }
  const missing = new Set<number>();
  const stored = new Map<string, Message>();
  const original = new Map<string, Message>();
  for (const row of rows) {
    if (row.kind === 'missing') missing.add(row.session_id);
    else if (row.kind === 'existing') original.set(keyOf(row.session_id, row.client_msg_id), toMessage(row));
    else {
      const key = keyOf(row.session_id, row.client_msg_id);
      const input = firstInput.get(key);
      if (!input) throw new Error(`stored message ${key} is not in the batch`);
      stored.set(key, toMessage({ ...row, sender_id: input.sender_id, sender_role: input.sender_role, content: input.content }));
    }
  }

  const claimed = new Set<string>();
  return inputs.map((input): StoreOutcome => {
    const key = keyOf(input.session_id, input.client_msg_id);
    const before = original.get(key);
    if (before) return { kind: 'duplicate', message: before };
    const now = stored.get(key);
    if (now) {
      // The second copy of a message inside one batch is a duplicate of the first.
      if (claimed.has(key)) return { kind: 'duplicate', message: now };
      claimed.add(key);
      return { kind: 'stored', message: now };
    }
    if (missing.has(input.session_id)) return { kind: 'rejected', reason: `session ${input.session_id} does not exist` };
    throw new Error(`message ${key} neither stored nor found`);
  });
}
