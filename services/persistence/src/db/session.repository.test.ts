import { createDb, type Database } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createTestDatabase, type TestDatabase } from '@switchboard/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratePersistence } from '../app.js';
import { PERSISTENCE_CONNECTION_SETTINGS } from './connection-settings.js';
import type { PersistenceDatabase } from './schema.js';
import { listSessions, listSessionsQuery, type SessionListFilter } from './session.repository.js';

/** Enough that reading the whole table and sorting it costs far more than reading an index's first rows. */
const SESSIONS = 100_000;

let database: TestDatabase;
/** As persistence connects (main.ts), and with the server's own planner settings. */
let persistence: Database<PersistenceDatabase>;
let plain: Database<PersistenceDatabase>;
/** Sessions created in the same instant, after all the others. */
let ties: number[];

beforeAll(async () => {
  database = await createTestDatabase('session_list');
  persistence = createDb({
    url: database.url,
    poolSize: 1,
    applicationName: 'session-list-test',
    settings: PERSISTENCE_CONNECTION_SETTINGS,
  });
  plain = createDb({ url: database.url, poolSize: 1, applicationName: 'session-list-test-plain' });
  await migratePersistence(persistence.db, createLogger({ name: 'session-list-test', level: 'warn' }));
  // The first inserted (lowest ids) are the newest: created_at, not id, decides the order.
  await sql`
    insert into sessions (customer_id, status, created_at)
    select g % 1000, case when g % 3 = 0 then 'closed' else 'open' end, now() - g * interval '1 second'
    from generate_series(1, ${SESSIONS}::int) g
  `.execute(persistence.db);
  const { rows } = await sql<{ id: number }>`
    insert into sessions (customer_id, created_at) select g, now() + interval '1 hour' from generate_series(1, 3) g returning id
  `.execute(persistence.db);
  ties = rows.map((row) => Number(row.id));
  await sql`analyze sessions`.execute(persistence.db);
}, 120_000);

afterAll(async () => {
  await Promise.all([persistence?.destroy(), plain?.destroy()]);
  await database?.drop();
});

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  Plans?: PlanNode[];
}

/** The plan of the statement `listSessions` sends, run (`explain analyze`) on the given connection. */
async function planOf({ db }: Database<PersistenceDatabase>, filter: SessionListFilter): Promise<PlanNode[]> {
  const { rows } = await sql<{
    'QUERY PLAN': { Plan: PlanNode }[];
  }>`explain (analyze, format json) ${listSessionsQuery(db, filter)}`.execute(db);
  const nodes: PlanNode[] = [];
  const walk = (node: PlanNode) => {
    nodes.push(node);
    for (const child of node.Plans ?? []) walk(child);
  };
  const root = rows[0]?.['QUERY PLAN'][0]?.Plan;
  if (root) walk(root);
  return nodes;
}

describe('listSessions without a filter', () => {
  it.each([
    ['persistence', () => persistence],
    ['the server', () => plain],
  ])("reads only the newest `limit` rows of an index, with no sort, on %s's planner settings", async (_, handle) => {
    for (const limit of [1, 50, 200]) {
      const nodes = await planOf(handle(), { limit });
      expect(nodes.map((node) => node['Node Type'])).toEqual(['Limit', 'Index Scan']);
      const [, scan] = nodes;
      expect(scan).toMatchObject({ 'Relation Name': 'sessions', 'Index Name': 'sessions_created_at_id_idx' });
      expect(scan?.['Actual Rows']).toBeLessThanOrEqual(limit);
    }
  });

  it('keeps its order: newest first by created_at, then by id', async () => {
    const listed = await listSessions(persistence.db, { limit: 5 });
    const [first = 0, second = 0, third = 0] = [...ties].sort((a, b) => b - a);
    expect(listed.map((session) => session.id)).toEqual([first, second, third, 1, 2]);
  });

  it('reads no whole table with a filter either', async () => {
    for (const filter of [
      { status: 'open' as const, limit: 50 },
      { customerId: 7, limit: 50 },
    ]) {
      const nodes = await planOf(persistence, filter);
      expect(nodes.filter((node) => node['Node Type'] === 'Seq Scan')).toEqual([]);
      // At most the rows of that status or customer are read, never the table.
      const read = nodes.filter((node) => node['Relation Name'] === 'sessions').map((node) => node['Actual Rows'] ?? 0);
      expect(Math.max(...read)).toBeLessThan(SESSIONS / 2);
    }
  });
});
