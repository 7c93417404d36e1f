import { createDb, type Database } from '@switchboard/db';
import type { TestDatabase } from '@switchboard/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PersistenceDatabase } from './schema.js';
import { insertSession, listSessions, listSessionsQuery, type SessionListFilter, sessionCreateRetryAfterMs } from './session.repository.js';
import { migratedDatabase, type PlanNode, planNodes, preparedPlan } from './test-support.js';

/** Enough that reading the whole table and sorting it costs far more than reading an index's first rows. */
const SESSIONS = 100_000;

let database: TestDatabase;
/** As persistence connects (main.ts), and with the server's own planner settings. */
let persistence: Database<PersistenceDatabase>;
let plain: Database<PersistenceDatabase>;
/** Sessions created in the same instant, after all the others. */
let ties: number[];
/** A customer with 20,000 sessions, and their ids, newest first. */
const BUSY_CUSTOMER = 4_242;
let busyIds: number[];

beforeAll(async () => {
  ({ database, persistence } = await migratedDatabase('session_list', 'session-list-test'));
  plain = createDb({ url: database.url, poolSize: 1, applicationName: 'session-list-test-plain' });
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
  // One customer with many sessions, newest first by id, all older than the others (so that pages
  // of the others read rows that lie together, as the buffers compared below assume).
  const { rows: many } = await sql<{ id: number }>`
    insert into sessions (customer_id, created_at)
    select ${BUSY_CUSTOMER}, now() - interval '10 days' - g * interval '1 second' from generate_series(1, 20000) g returning id
  `.execute(persistence.db);
  busyIds = many.map((row) => Number(row.id));
  await sql`analyze sessions`.execute(persistence.db);
}, 120_000);

afterAll(async () => {
  await Promise.all([persistence?.destroy(), plain?.destroy()]);
  await database?.drop();
});

/** The plan persistence runs for `listSessions`. */
const preparedPlanOf = (filter: SessionListFilter) => preparedPlan(persistence.db, listSessionsQuery(persistence.db, filter).compile());

/**
 * Persistence's plan for `filter`, run, reads no table whole and sorts nothing: it reads at most
 * `limit` rows of `sessions`, those a filter threw away included.
 */
async function expectPageOfIndexOnly(filter: SessionListFilter): Promise<void> {
  const nodes = await preparedPlanOf(filter);
  expect(nodes.filter((node) => node['Node Type'] === 'Seq Scan' || node['Node Type'] === 'Sort')).toEqual([]);
  const read = nodes
    .filter((node) => node['Relation Name'] === 'sessions')
    .map((node) => (node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0));
  expect(Math.max(...read)).toBeLessThanOrEqual(filter.limit);
}

/** The plan of the statement `listSessions` sends, run (`explain analyze`) on the given connection. */
async function planOf({ db }: Database<PersistenceDatabase>, filter: SessionListFilter): Promise<PlanNode[]> {
  const { rows } = await sql<{
    'QUERY PLAN': { Plan: PlanNode }[];
  }>`explain (analyze, format json) ${listSessionsQuery(db, filter)}`.execute(db);
  return planNodes(rows[0]?.['QUERY PLAN'][0]?.Plan);
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
    expect(listed.sessions.map((session) => session.id)).toEqual([first, second, third, 1, 2]);
    expect(listed.hasMore).toBe(true);
  });

  it('pages in the same order with before_id, sessions created in the same instant included', async () => {
    const whole = (await listSessions(persistence.db, { limit: 5 })).sessions.map((session) => session.id);
    const paged: number[] = [];
    let beforeId: number | undefined;
    for (let page = 0; page < 5; page++) {
      const { sessions } = await listSessions(persistence.db, { limit: 1, beforeId });
      paged.push(...sessions.map((session) => session.id));
      beforeId = sessions.at(-1)?.id;
    }
    expect(paged).toEqual(whole);
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

describe('listSessions by status or customer', () => {
  it.each([
    { status: 'open' as const, limit: 50 },
    { status: 'closed' as const, limit: 50 },
    { customerId: 7, limit: 50 },
    // A customer with a long history, asking for the status it has none of: before, all 20,000
    // of its sessions were read and thrown away.
    { status: 'closed' as const, customerId: BUSY_CUSTOMER, limit: 50 },
    { status: 'open' as const, customerId: BUSY_CUSTOMER, limit: 50 },
  ])('reads only the newest `limit` rows of an index, as persistence plans it: %o', async (filter) => {
    await expectPageOfIndexOnly(filter);
  });
});

describe('listSessions after before_id', () => {
  it.each([
    { customerId: 7, limit: 30 },
    { status: 'closed' as const, customerId: 7, limit: 7 },
  ])('lists every session of the filter once, in order, page after page, and says when none are left: %o', async (filter) => {
    const all = await listSessions(persistence.db, { ...filter, limit: 200 });
    expect(all.hasMore).toBe(false);
    const paged: number[] = [];
    const more: boolean[] = [];
    let beforeId: number | undefined;
    do {
      const page = await listSessions(persistence.db, { ...filter, beforeId });
      paged.push(...page.sessions.map((session) => session.id));
      more.push(page.hasMore);
      beforeId = page.sessions.at(-1)?.id;
    } while (more.at(-1));
    expect(paged).toEqual(all.sessions.map((session) => session.id));
    expect(more.filter((hasMore) => !hasMore)).toHaveLength(1);
    expect(more.length).toBe(Math.ceil(paged.length / filter.limit) || 1);
  });

  it('lists nothing after a session that does not exist', async () => {
    expect(await listSessions(persistence.db, { beforeId: 999_999_999, limit: 10 })).toEqual({ sessions: [], hasMore: false });
  });

  it.each([
    { shallow: 1_000, deep: 90_000 },
    { status: 'open' as const, shallow: 1_000, deep: 90_000 },
    { status: 'closed' as const, shallow: 1_002, deep: 90_000 },
    { customerId: BUSY_CUSTOMER, shallow: 100, deep: 19_000 },
  ])('starts reading at the cursor, however deep, as persistence plans it: %o', async ({ shallow, deep, ...filter }) => {
    const pages: number[] = [];
    // The busy customer's cursors are the positions among their sessions.
    const cursors = filter.customerId === undefined ? [shallow, deep] : [busyIds[shallow] ?? 0, busyIds[deep] ?? 0];
    for (const beforeId of cursors) {
      const nodes = await preparedPlanOf({ ...filter, beforeId, limit: 50 });
      expect(nodes.filter((node) => node['Node Type'] === 'Seq Scan' || node['Node Type'] === 'Sort')).toEqual([]);
      pages.push((nodes[0]?.['Shared Hit Blocks'] ?? 0) + (nodes[0]?.['Shared Read Blocks'] ?? 0));
    }
    // Before, by status: the scan began at the newest session of the status and walked the index
    // to the cursor, hundreds of pages more at the deep one.
    const [atShallow = 0, atDeep = 0] = pages;
    expect(atDeep).toBeLessThanOrEqual(atShallow + 10);
  });

  it("lists nothing for a customer after another customer's session", async () => {
    expect(await listSessions(persistence.db, { customerId: 7, beforeId: 50_008, limit: 10 })).toEqual({ sessions: [], hasMore: false });
    expect((await listSessions(persistence.db, { customerId: 7, beforeId: 50_007, limit: 10 })).sessions).toHaveLength(10);
  });
});

describe('insertSession', () => {
  const limit = { max: 3, windowMs: 60_000 };

  it('creates at most `max` sessions per customer within the window, then answers undefined', async () => {
    const created = [];
    for (let i = 0; i < 5; i++) created.push(await insertSession(persistence.db, { customerId: 424_242, subject: `s${i}` }, limit));
    expect(created.map((session) => session?.subject)).toEqual(['s0', 's1', 's2', undefined, undefined]);
    expect(await insertSession(persistence.db, { customerId: 424_243, subject: null }, limit)).toMatchObject({ customer_id: 424_243 });
  });

  it('tells a refused customer when the max-th newest session in the window leaves it', async () => {
    await sql`
      insert into sessions (customer_id, created_at)
      select 626262, now() - make_interval(secs => s) from unnest(array[50, 30, 20, 10]) s
    `.execute(persistence.db);
    expect(await insertSession(persistence.db, { customerId: 626_262, subject: null }, limit)).toBeUndefined();
    // The three newest were created 10, 20 and 30 s ago; the third leaves the 60 s window in 30 s.
    const retryAfterMs = await sessionCreateRetryAfterMs(persistence.db, 626_262, limit);
    expect(retryAfterMs).toBeGreaterThan(29_000);
    expect(retryAfterMs).toBeLessThanOrEqual(30_000);
    expect(await sessionCreateRetryAfterMs(persistence.db, 727_272, limit)).toBe(0);
  });

  it('tells a wait longer than a 32-bit number of milliseconds, as with a 30-day window', async () => {
    const month = { max: 1, windowMs: 30 * 24 * 3_600_000 };
    expect(await insertSession(persistence.db, { customerId: 828_282, subject: null }, month)).toBeDefined();
    expect(await insertSession(persistence.db, { customerId: 828_282, subject: null }, month)).toBeUndefined();
    const retryAfterMs = await sessionCreateRetryAfterMs(persistence.db, 828_282, month);
    expect(retryAfterMs).toBeGreaterThan(month.windowMs - 60_000);
    expect(retryAfterMs).toBeLessThanOrEqual(month.windowMs);
  });

  it('counts only the sessions created within the window', async () => {
    await sql`
      insert into sessions (customer_id, created_at) select 525252, now() - interval '2 minutes' from generate_series(1, 10)
    `.execute(persistence.db);
    const created = [];
    for (let i = 0; i < 4; i++) created.push(await insertSession(persistence.db, { customerId: 525_252, subject: null }, limit));
    expect(created.map((session) => session !== undefined)).toEqual([true, true, true, false]);
  });
});
