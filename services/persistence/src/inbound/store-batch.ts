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
 * Stores a batch of inbound messages in one transaction and returns an outcome per input, in
 * input order.
 *
 * Seqs are gapless because each session's `last_seq` is read and advanced under its row lock in
 * the same transaction as the inserts; rows are locked in ascending id order so that concurrent
 * batches (several replicas) never deadlock. Inputs keep their order within a session, so a
 * sender's messages get increasing seqs in the order they were published. The unique
 * (session_id, client_msg_id) makes retries and redeliveries return the original message.
 */
export async function storeBatch(db: Kysely<PersistenceDatabase>, inputs: readonly InboundMessage[]): Promise<StoreOutcome[]> {
  if (inputs.length === 0) return [];
  return db.transaction().execute(async (trx) => {
    const sessionIds = [...new Set(inputs.map((input) => input.session_id))].sort((a, b) => a - b);
    const locked = await sql<{ id: number; last_seq: number }>`
      select id, last_seq from sessions where id = any(${sessionIds}::bigint[]) order by id for update`.execute(trx);
    const lastSeq = new Map(locked.rows.map((row) => [row.id, row.last_seq]));

    const existing = await sql<MessageRow>`
      select m.* from messages m
      join unnest(${inputs.map((input) => input.session_id)}::bigint[], ${inputs.map((input) => input.client_msg_id)}::text[])
        as k(session_id, client_msg_id) using (session_id, client_msg_id)`.execute(trx);
    const known = new Map<string, Message>(existing.rows.map((row) => [keyOf(row.session_id, row.client_msg_id), toMessage(row)]));

    // Decide each input's fate; the new ones get their seqs here.
    const plan: ({ kind: 'new'; key: string; seq: number } | StoreOutcome)[] = [];
    const fresh: (InboundMessage & { seq: number })[] = [];
    const claimed = new Set<string>();
    for (const input of inputs) {
      const key = keyOf(input.session_id, input.client_msg_id);
      const original = known.get(key);
      const last = lastSeq.get(input.session_id);
      if (original) plan.push({ kind: 'duplicate', message: original });
      else if (claimed.has(key)) plan.push({ kind: 'new', key, seq: -1 });
      else if (last === undefined) plan.push({ kind: 'rejected', reason: `session ${input.session_id} does not exist` });
      else {
        const seq = last + 1;
        lastSeq.set(input.session_id, seq);
        claimed.add(key);
        fresh.push({ ...input, seq });
        plan.push({ kind: 'new', key, seq });
      }
    }

    const inserted = new Map<string, Message>();
    if (fresh.length > 0) {
      const rows = await sql<MessageRow>`
        insert into messages (session_id, seq, sender_id, sender_role, content, client_msg_id)
        select * from unnest(
          ${fresh.map((m) => m.session_id)}::bigint[], ${fresh.map((m) => m.seq)}::bigint[],
          ${fresh.map((m) => m.sender_id)}::bigint[], ${fresh.map((m) => m.sender_role)}::text[],
          ${fresh.map((m) => m.content)}::text[], ${fresh.map((m) => m.client_msg_id)}::text[])
        returning *`.execute(trx);
      for (const row of rows.rows) inserted.set(keyOf(row.session_id, row.client_msg_id), toMessage(row));

      const advanced = [...new Set(fresh.map((m) => m.session_id))];
      await sql`
        update sessions s set last_seq = u.last_seq
        from unnest(${advanced}::bigint[], ${advanced.map((id) => lastSeq.get(id) ?? 0)}::bigint[]) as u(id, last_seq)
        where s.id = u.id`.execute(trx);
    }

    return plan.map((step): StoreOutcome => {
      if (step.kind !== 'new') return step;
      const message = inserted.get(step.key);
      if (!message) throw new Error(`inserted message ${step.key} missing from RETURNING`);
      // The second copy of a message inside one batch is a duplicate of the first.
      return step.seq === -1 ? { kind: 'duplicate', message } : { kind: 'stored', message };
    });
  });
}
