import type { Message } from '@switchboard/protocol';
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

/** A page of history before `beforeSq` (or the newest page), oldest first inside the page. */
export async function findHistoryPage(
  db: Kysely<PersistenceDatabase>,
  page: { sessionId: number; beforeSeq?: number | undefined; limit: number },
): Promise<{ messages: Message[]; hasMore: boolean }> {
  let query = db
    .selectFrom('messages')
    .selectAll()
    .where('session_id', '=', page.sessionId)
    .orderBy('seq', 'desc')
    .limit(page.limit + 1);
  if (page.beforeSeq !== undefined) query = query.where('seq', '<', page.beforeSeq);
  const rows = await query.execute();
  const hasMore = rows.length > page.limit;
  return { messages: rows.slice(0, page.limit).reverse().map(toMessage), hasMore };
}

/** Messages with seq above `afterSeq`, oldest first. */
export async function findMessagesAfter(
  db: Kysely<PersistenceDatabase>,
  range: { sessionId: number; afterSeq: number; limit: number },
): Promise<Message[]> {
  const rows = await db
    .selectFrom('messages')
    .selectAll()
    .where('session_id', '=', range.sessionId)
    .where('seq', '>', range.afterSeq)
    .orderBy('seq', 'asc')
    .limit(range.limit)
    .execute();
  return rows.map(toMessage);
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
