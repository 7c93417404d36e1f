import { createDb, type Database } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import type { InboundMessage } from '@switchboard/protocol';
import { createTestDatabase, type TestDatabase } from '@switchboard/testing';
import { type RawBuilder, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratePersistence } from '../app.js';
import { PERSISTENCE_CONNECTION_SETTINGS } from '../db/connection-settings.js';
import type { PersistenceDatabase } from '../db/schema.js';
import { storeBatch } from './store-batch.js';

let database: TestDatabase;
let handle: Database<PersistenceDatabase>;
let sessions: number[];

const message = (session_id: number, client_msg_id: string): InboundMessage => ({
  session_id,
  client_msg_id,
  sender_id: 1,
  sender_role: 'user',
  content: `content of ${client_msg_id}`,
  received_at: new Date().toISOString(),
});

beforeAll(async () => {
  database = await createTestDatabase('store_batch');
  handle = connectAsPersistence();
  await migratePersistence(handle.db, createLogger({ name: 'store-batch-test', level: 'warn' }));
  const { rows } = await sql<{ id: number }>`insert into sessions (customer_id) select g from generate_series(1, 3) g returning id`.execute(
    handle.db,
  );
  sessions = rows.map((row) => Number(row.id));
});

/** As persistence connects (main.ts), with one connection, so every batch on it shares its plan. */
const connectAsPersistence = () =>
  createDb<PersistenceDatabase>({
    url: database.url,
    poolSize: 1,
    applicationName: 'store-batch-test',
    settings: PERSISTENCE_CONNECTION_SETTINGS,
  });

afterAll(async () => {
  await handle?.destroy();
  await database?.drop();
});

describe('storeBatch', () => {
  it('numbers each session in input order, and answers duplicates and unknown sessions', async () => {
    const [a = 0, b = 0] = sessions;
    const first = await storeBatch(handle.db, [
      message(b, 'b1'),
      message(a, 'a1'),
      message(a, 'a2'),
      message(a, 'a1'),
      message(999_999, 'x'),
    ]);
    expect(first.map((outcome) => outcome.kind)).toEqual(['stored', 'stored', 'stored', 'duplicate', 'rejected']);
    const seqs = first.map((outcome) => (outcome.kind === 'rejected' ? undefined : outcome.message.seq));
    expect(seqs).toEqual([1, 1, 2, 1, undefined]);

    const second = await storeBatch(handle.db, [message(a, 'a2'), message(a, 'a3'), message(b, 'b2')]);
    expect(second.map((outcome) => outcome.kind)).toEqual(['duplicate', 'stored', 'stored']);
    expect(second.map((outcome) => (outcome.kind === 'rejected' ? undefined : outcome.message.seq))).toEqual([2, 3, 2]);
    const { rows } = await sql<{ id: number; last_seq: number }>`select id, last_seq from sessions order by id`.execute(handle.db);
    expect(rows.map((row) => Number(row.last_seq))).toEqual([3, 2, 0]);
  });

  it('keeps one generic plan that reads every table by index, however small the tables were when it was made', async () => {
    // Planned above, with a handful of rows; a plan that joined by scanning whole tables then
    // would scan them on every batch for the life of the connection, however large they grow.
    const [a = 0, b = 0, c = 0] = sessions;
    await storeBatch(handle.db, [message(c, 'c1'), message(a, 'a4')]);
    const { rows: statements } = await sql<{
      generic_plans: number;
      custom_plans: number;
    }>`select generic_plans, custom_plans from pg_prepared_statements where name = 'store_batch'`.execute(handle.db);
    expect(statements).toHaveLength(1);
    expect(Number(statements[0]?.generic_plans)).toBeGreaterThanOrEqual(3);
    expect(Number(statements[0]?.custom_plans)).toBe(0);

    expect(await tableScans(handle, a, b)).toEqual(INDEX_SCANS_ONLY);
  });

  it('reads every table by index in a plan made on analyzed tables of a thousand sessions', async () => {
    // With statistics, a small table can look cheaper to scan whole than by index; for a join
    // repeated per session in the batch, that made a batch of 500 cost PostgreSQL 230 ms.
    const { rows } = await sql<{ id: number }>`
      insert into sessions (customer_id) select g from generate_series(1, 1000) g returning id
    `.execute(handle.db);
    const [a = 0, b = 0] = rows.map((row) => Number(row.id));
    await sql`analyze sessions`.execute(handle.db);
    await sql`analyze messages`.execute(handle.db);
    const fresh = connectAsPersistence();
    try {
      await storeBatch(fresh.db, [message(a, 'f1'), message(b, 'f2')]);
      expect(await tableScans(fresh, a, b)).toEqual(INDEX_SCANS_ONLY);
    } finally {
      await fresh.destroy();
    }
  });
});

describe("persistence's connection settings", () => {
  it('do not compile with JIT a statement that sequential scans, priced out, make look expensive', async () => {
    // None of persistence's statements reads a table whole now; the session list did, before its
    // index, and was compiled on every run. A lookup by a column without an index stands in for it.
    const query = handle.db.selectFrom('sessions').selectAll().where('subject', '=', 'no such subject');
    const explained = await explain<{ 'Total Cost': number }>(handle, sql`${query}`);
    // The plan is priced as one with a sequential scan turned off...
    expect(explained?.Plan['Total Cost']).toBeGreaterThan(1e9);
    // ...and still not compiled.
    expect(explained).not.toHaveProperty('JIT');
  });
});

const INDEX_SCANS_ONLY = [
  'Index Scan on messages',
  'Index Scan on sessions',
  'Index Scan on sessions',
  'ModifyTable on messages',
  'ModifyTable on sessions',
];

/** How the connection's generic plan of `store_batch` reads and writes `sessions` and `messages`. */
async function tableScans(handle: Database<PersistenceDatabase>, a: number, b: number): Promise<string[]> {
  type PlanNode = { 'Node Type'?: string; 'Relation Name'?: string; Plans?: PlanNode[] };
  const explained = await explain<PlanNode>(
    handle,
    sql`execute store_batch(
      '{${sql.raw(String(a))}}', '{"e1"}', '{1}', '{"user"}', '{"text"}', '{${sql.raw(`${a},${b}`)}}'
    )`,
  );
  const scans: string[] = [];
  const walk = (node: PlanNode) => {
    if (node['Relation Name']) scans.push(`${node['Node Type']} on ${node['Relation Name']}`);
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(explained?.Plan ?? {});
  return scans.filter((scan) => scan.includes('sessions') || scan.includes('messages')).sort();
}

/** `explain (format json)` of a statement, on the given connection: its plan, and `JIT` when compiled. */
async function explain<Plan>(
  { db }: Database<PersistenceDatabase>,
  statement: RawBuilder<unknown>,
): Promise<{ Plan: Plan; JIT?: unknown } | undefined> {
  const { rows } = await sql<{ 'QUERY PLAN': { Plan: Plan; JIT?: unknown }[] }>`explain (format json) ${statement}`.execute(db);
  return rows[0]?.['QUERY PLAN'][0];
}
