import type { Database } from '@switchboard/db';
import { fillHistory, type TestDatabase } from '@switchboard/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findHistoryPage, findMessagesAfter, isDeadLettered, pageRowsQuery } from './message.repository.js';
import type { PersistenceDatabase } from './schema.js';
import { migratedDatabase, preparedPlan } from './test-support.js';

/** A reply's budget under which three of the large messages' contents fit, and two of their JSON. */
const BUDGET = 7_000;

let database: TestDatabase;
let persistence: Database<PersistenceDatabase>;
/** 12 messages of 3,000 characters, and 3 of 10,000, each larger than the budget. */
let large: number;
let huge: number;

beforeAll(async () => {
  ({ database, persistence } = await migratedDatabase('message_pages', 'message-pages-test'));
  const { rows } = await sql<{ id: number }>`insert into sessions (customer_id) values (1), (2) returning id`.execute(persistence.db);
  [large = 0, huge = 0] = rows.map((row) => Number(row.id));
  // Random characters, which PostgreSQL cannot compress below the budget.
  const random = (length: number) =>
    sql<string>`(select string_agg(chr(65 + (random() * 25)::int), '') from generate_series(1, ${length}))`;
  for (const [sessionId, count, length] of [
    [large, 12, 3_000],
    [huge, 3, 10_000],
  ] as const) {
    await fillHistory(database.url, { sessionId, senderId: 1, content: 'x', count });
    await sql`update messages set content = ${random(length)} where session_id = ${sessionId}`.execute(persistence.db);
  }
}, 60_000);

afterAll(async () => {
  await persistence?.destroy();
  await database?.drop();
});

describe('pages of large messages', () => {
  it('send persistence no more rows than could fit in a reply, and one more', async () => {
    for (const direction of ['asc', 'desc'] as const) {
      const { rows } = await pageRowsQuery({ sessionId: large, direction, limit: 500, budgetBytes: BUDGET }).execute(persistence.db);
      // Before: all 12.
      expect(rows.map((row) => row.seq)).toEqual(direction === 'asc' ? [1, 2, 3] : [12, 11, 10]);
    }
  });

  it('are cut to the budget, the rest left for the next page', async () => {
    expect(
      (await findMessagesAfter(persistence.db, { sessionId: large, afterSeq: 0, limit: 500, budgetBytes: BUDGET })).map((m) => m.seq),
    ).toEqual([1, 2]);
    expect(
      (await findMessagesAfter(persistence.db, { sessionId: large, afterSeq: 10, limit: 500, budgetBytes: BUDGET })).map((m) => m.seq),
    ).toEqual([11, 12]);
    const newest = await findHistoryPage(persistence.db, { sessionId: large, limit: 50, budgetBytes: BUDGET });
    expect({ seqs: newest.messages.map((m) => m.seq), hasMore: newest.hasMore }).toEqual({ seqs: [11, 12], hasMore: true });
    const oldest = await findHistoryPage(persistence.db, { sessionId: large, beforeSeq: 3, limit: 50, budgetBytes: BUDGET });
    expect({ seqs: oldest.messages.map((m) => m.seq), hasMore: oldest.hasMore }).toEqual({ seqs: [1, 2], hasMore: false });
  });

  it('hold one message each when each is over the budget, and say there is more', async () => {
    expect(
      (await findMessagesAfter(persistence.db, { sessionId: huge, afterSeq: 0, limit: 500, budgetBytes: BUDGET })).map((m) => m.seq),
    ).toEqual([1]);
    const newest = await findHistoryPage(persistence.db, { sessionId: huge, limit: 50, budgetBytes: BUDGET });
    expect({ seqs: newest.messages.map((m) => m.seq), hasMore: newest.hasMore }).toEqual({ seqs: [3], hasMore: true });
    // The oldest, alone over the budget too, and nothing before it.
    const oldest = await findHistoryPage(persistence.db, { sessionId: huge, beforeSeq: 2, limit: 50, budgetBytes: BUDGET });
    expect({ seqs: oldest.messages.map((m) => m.seq), hasMore: oldest.hasMore }).toEqual({ seqs: [1], hasMore: false });
  });

  it('read the index in order, without a sort, and no more rows than asked for, as persistence plans them', async () => {
    for (const direction of ['asc', 'desc'] as const) {
      const compiled = pageRowsQuery({ sessionId: large, direction, bound: 5, limit: 3, budgetBytes: 1_000_000 }).compile(persistence.db);
      const nodes = await preparedPlan(persistence.db, compiled);
      expect(nodes.filter((node) => ['Sort', 'Seq Scan', 'Bitmap Heap Scan'].includes(node['Node Type']))).toEqual([]);
      // The three rows, and the one `lead` looks at.
      const read = nodes.filter((node) => node['Relation Name'] === 'messages').map((node) => node['Actual Rows'] ?? 0);
      expect(Math.max(...read)).toBeLessThanOrEqual(4);
    }
  });
});

describe('a message set aside', () => {
  it('is found by its session, client_msg_id and stream sequence, not by another sent with the same id', async () => {
    await sql`insert into dead_letters (session_id, client_msg_id, reason, payload, stream_seq)
              values (${large}, 'set-aside', 'refused', '{}', 41)`.execute(persistence.db);
    expect(await isDeadLettered(persistence.db, large, 'set-aside', 41)).toBe(true);
    // The same id sent again after the stream's duplicate window: another message, maybe stored yet.
    expect(await isDeadLettered(persistence.db, large, 'set-aside', 42)).toBe(false);
    expect(await isDeadLettered(persistence.db, huge, 'set-aside', 41)).toBe(false);
    expect(await isDeadLettered(persistence.db, large, 'other', 41)).toBe(false);
  });
});
