import { MAX_PAYLOAD_HEADROOM_BYTES, type Message } from '@switchboard/protocol';
import { type Kysely, sql } from 'kysely';
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

/** A row of a page, with the bytes of the contents before it in the page, and the seq after it (null: none). */
type PageRow = MessageRow & { bytes_before: number; next_seq: number | null };

/**
 * The rows of a page of a session's messages, in `direction` of seq from `bound` (exclusive), at
 * most `limit`, and no further than the first whose contents before it reach `budgetBytes`: what
 * could fit in one reply, and one more. PostgreSQL reads each content's size from the stored
 * datum, without detoasting it, so the rows past the budget are read but never sent. Before, a
 * page sent all of its `limit` rows to persistence, which kept what fit in 512 KiB: 6 MB for 500
 * messages of 4,000 three-byte characters. Every row a reply can take is among those sent, since a
 * message's JSON is longer than its content.
 */
export function pageRowsQuery(page: {
  sessionId: number;
  direction: 'asc' | 'desc';
  bound?: number | undefined;
  limit: number;
  budgetBytes: number;
}) {
  const order = page.direction === 'asc' ? sql`asc` : sql`desc`;
  const bound = page.bound === undefined ? sql`` : page.direction === 'asc' ? sql`and seq > ${page.bound}` : sql`and seq < ${page.bound}`;
  return sql<PageRow>`
    select * from (
      select messages.*, sum(octet_length(content)) over (order by seq ${order}) - octet_length(content) as bytes_before,
        lead(seq) over (order by seq ${order}) as next_seq
      from messages where session_id = ${page.sessionId} ${bound}
      order by seq ${order} limit ${page.limit}
    ) page where bytes_before < ${page.budgetBytes} order by seq ${order}`;
}

/**
 * A page of history before `beforeSeq` (or the newest page), oldest first inside the page. A page
 * too large for one reply keeps its newest messages and says `hasMore`.
 */
export async function findHistoryPage(
  db: Kysely<PersistenceDatabase>,
  page: { sessionId: number; beforeSeq?: number | undefined; limit: number; budgetBytes: number },
): Promise<{ messages: Message[]; hasMore: boolean }> {
  const { rows } = await pageRowsQuery({
    sessionId: page.sessionId,
    direction: 'desc',
    bound: page.beforeSeq,
    limit: page.limit,
    budgetBytes: page.budgetBytes,
  }).execute(db);
  const newestFirst = rows.map(toMessage);
  const fitting = countWithinBudget(newestFirst, page.budgetBytes);
  // Cut here for the budget, or before: by `limit` or in the statement, where the seq after the
  // last row sent, read ahead, says whether one is left.
  const hasMore = fitting < newestFirst.length || (rows.at(-1)?.next_seq ?? null) !== null;
  return { messages: newestFirst.slice(0, fitting).reverse(), hasMore };
}

/** Messages with seq above `afterSeq`, oldest first; fewer than `limit` when they would not fit in one reply. */
export async function findMessagesAfter(
  db: Kysely<PersistenceDatabase>,
  range: { sessionId: number; afterSeq: number; limit: number; budgetBytes: number },
): Promise<Message[]> {
  const { rows } = await pageRowsQuery({
    sessionId: range.sessionId,
    direction: 'asc',
    bound: range.afterSeq,
    limit: range.limit,
    budgetBytes: range.budgetBytes,
  }).execute(db);
  const messages = rows.map(toMessage);
  return messages.slice(0, countWithinBudget(messages, range.budgetBytes));
}

/** Whether the inbound stream's message `streamSeq`, of the session and `client_msg_id`, was set aside (`dead_letters`). */
export async function isDeadLettered(
  db: Kysely<PersistenceDatabase>,
  sessionId: number,
  clientMsgId: string,
  streamSeq: number,
): Promise<boolean> {
  const row = await db
    .selectFrom('dead_letters')
    .select('id')
    .where('session_id', '=', sessionId)
    .where('client_msg_id', '=', clientMsgId)
    .where('stream_seq', '=', streamSeq)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
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
