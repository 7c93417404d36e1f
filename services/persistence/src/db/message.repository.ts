import { MAX_PAYLOAD_HEADROOM_BYTES, type Message } from '@switchboard/protocol';
import type { Kysely } from 'kysely';
import type { MessageRow } from './message.table.js';
import type { PersistenceDatabase } from './schema.js';

export const toMessage = (row: MessageRow): Message => ({
  id: row.id,
  session_id: row.session_id,
  seq: row.seq,
  sender_id: row.sender_id,
  sender_role: row.sender_role,
  content: row.content,
  client_msg_id: row.client_msg_id,
  created_at: row.created_at.toISOString(),
});

/**
 * Most bytes of messages (as JSON) in one reply. Replies travel as one NATS message, and one
 * over the server's max_payload (1 MiB by default) cannot be sent at all: a page of 500
 * messages of 4000 characters already is. Pages are cut to this size, or to what a smaller
 * max_payload leaves (`pageBytesBudget`), keeping at least one message (the gateways refuse a
 * message whose event would not fit in max_payload).
 */
export const PAGE_BYTES_BUDGET = 512 * 1024;
/** The page budget under a NATS server that takes at most `maxPayload` bytes in one message. */
export function pageBytesBudget(maxPayload: number): number {
  return Math.min(PAGE_BYTES_BUDGET, maxPayload - MAX_PAYLOAD_HEADROOM_BYTES);
}

/** How many of `items` (messages, sessions), taken in order, fit as JSON in `budgetBytes` (at least one). */
export function countWithinBudget(items: readonly unknown[], budgetBytes: number): number {
  let bytes = 0;
  for (const [index, item] of items.entries()) {
    bytes += Buffer.byteLength(JSON.stringify(item)) + 1;
    if (bytes > budgetBytes) return Math.max(1, index);
  }
  return items.length;
}

/**
 * A page of history before `beforeSq` (or the newest page), oldest first inside the page. A page
 * too large for one reply keeps its newest messages and says `hasMore`.
 */
export async function findHistoryPage(
  db: Kysely<PersistenceDatabase>,
  page: { sessionId: number; beforeSeq?: number | undefined; limit: number; budgetBytes: number },
): Promise<{ messages: Message[]; hasMore: boolean }> {
  let query = db
    .selectFrom('messages')
    .selectAll()
    .where('session_id', '=', page.sessionId)
    .orderBy('seq', 'desc')
    .limit(page.limit + 1);
  if (page.beforeSeq !== undefined) query = query.where('seq', '<', page.beforeSeq);
  const rows = await query.execute();
  const newestFirst = rows.slice(0, page.limit).map(toMessage);
  const fitting = countWithinBudget(newestFirst, page.budgetBytes);
  const hasMore = rows.length > page.limit || fitting < newestFirst.length;
  return { messages: newestFirst.slice(0, fitting).reverse(), hasMore };
}

/** Messages with seq above `afterSeq`, oldest first; fewer than `limit` when they would not fit in one reply. */
export async function findMessagesAfter(
  db: Kysely<PersistenceDatabase>,
  range: { sessionId: number; afterSeq: number; limit: number; budgetBytes: number },
): Promise<Message[]> {
  const rows = await db
    .selectFrom('messages')
    .selectAll()
    .where('session_id', '=', range.sessionId)
    .where('seq', '>', range.afterSeq)
    .orderBy('seq', 'asc')
    .limit(range.limit)
    .execute();
  const messages = rows.map(toMessage);
  return messages.slice(0, countWithinBudget(messages, range.budgetBytes));
}

export async function findMessageByClientMsgId(
  db: Kysely<PersistenceDatabase>,
  sessionId: number,
  clientMsgId: string,
): Promise<Message | undefined> {
  const row = await db
    .selectFrom('messages')
    .selectAll()
    .where('session_id', '=', sessionId)
    .where('client_msg_id', '=', clientMsgId)
    .executeTakeFirst();
  return row && toMessage(row);
}
