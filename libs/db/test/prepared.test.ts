import { createDb, type Database, prepared } from '@switchboard/db';
import { createTestDatabase, type TestDatabase } from '@switchboard/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preparedName } from '../src/prepared.js';

let database: TestDatabase;
let handle: Database<unknown>;

beforeAll(async () => {
  database = await createTestDatabase('db_prepared');
  // One connection, so that every query below sees the same session's prepared statements.
  handle = createDb<unknown>({ url: database.url, poolSize: 1, applicationName: 'db-prepared-test' });
});

afterAll(async () => {
  await handle?.destroy();
  await database?.drop();
});

const preparedStatements = async () =>
  (await sql<{ name: string }>`select name from pg_prepared_statements order by name`.execute(handle.db)).rows.map((row) => row.name);

describe('prepared()', () => {
  it('sends a marked statement as a named prepared statement, parsed once per connection, and others unnamed', async () => {
    expect(await preparedStatements()).toEqual([]);
    const double = (values: number[]) =>
      sql<{ doubled: number }>`${prepared('double_all')} select v * 2 as doubled from unnest(${values}::int[]) as v`.execute(handle.db);

    expect((await double([1, 2, 3])).rows.map((row) => row.doubled)).toEqual([2, 4, 6]);
    expect((await double([10])).rows.map((row) => row.doubled)).toEqual([20]);
    expect((await double([])).rows).toEqual([]);
    await sql`select ${1}::int as unmarked`.execute(handle.db);

    expect(await preparedStatements()).toEqual(['double_all']);
  });

  it('leaves settings to the server unless told, and gives every connection the settings it is told', async () => {
    const settings = async (db: Database<unknown>['db']) =>
      (
        await sql<{ mode: string; seqscan: string }>`
          select current_setting('plan_cache_mode') as mode, current_setting('enable_seqscan') as seqscan
        `.execute(db)
      ).rows[0];
    expect(await settings(handle.db)).toEqual({ mode: 'auto', seqscan: 'on' });
    const generic = createDb<unknown>({
      url: database.url,
      poolSize: 2,
      applicationName: 'db-prepared-test',
      // One the server does not know is left out; the others still apply.
      settings: { plan_cache_mode: 'force_generic_plan', no_such_setting: 'on', enable_seqscan: 'off' },
    });
    try {
      // Two connections in use at once, so both are asked.
      const [first, second] = await Promise.all([
        generic.db.connection().execute(async (connection) => {
          await sql`select pg_sleep(0.05)`.execute(connection);
          return settings(connection);
        }),
        generic.db.connection().execute(async (connection) => {
          await sql`select pg_sleep(0.05)`.execute(connection);
          return settings(connection);
        }),
      ]);
      expect([first, second]).toEqual([
        { mode: 'force_generic_plan', seqscan: 'off' },
        { mode: 'force_generic_plan', seqscan: 'off' },
      ]);
    } finally {
      await generic.destroy();
    }
  });

  it('a marked statement that fails leaves the connection usable and is not kept', async () => {
    await expect(sql`${prepared('broken_one')} select * from no_such_table`.execute(handle.db)).rejects.toThrow(/no_such_table/);
    expect((await sql<{ one: number }>`select 1 as one`.execute(handle.db)).rows).toEqual([{ one: 1 }]);
    expect(await preparedStatements()).not.toContain('broken_one');
  });

  it('runs a marked statement whose result type a migration changed, and prepares it anew on a new connection', async () => {
    const fresh = createDb<unknown>({ url: database.url, poolSize: 1, applicationName: 'db-prepared-stale-test' });
    try {
      await sql`create table stale_types (id int primary key, role text)`.execute(fresh.db);
      await sql`insert into stale_types values (1, 'agent')`.execute(fresh.db);
      const read = () => sql<{ role: string }>`${prepared('read_role')} select role from stale_types where id = ${1}`.execute(fresh.db);
      const backend = async () => (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(fresh.db)).rows[0]?.pid;
      expect((await read()).rows).toEqual([{ role: 'agent' }]);
      const before = await backend();
      await sql`alter table stale_types alter column role type varchar(16)`.execute(fresh.db);
      // Before: "cached plan must not change result type" (0A000), on every run on this connection.
      expect((await read()).rows).toEqual([{ role: 'agent' }]);
      expect(await backend()).not.toBe(before);
      expect((await read()).rows).toEqual([{ role: 'agent' }]);
      expect((await sql<{ name: string }>`select name from pg_prepared_statements`.execute(fresh.db)).rows).toEqual([
        { name: 'read_role' },
      ]);
    } finally {
      await fresh.destroy();
    }
  });

  it('does not run such a statement again inside a transaction, which its refusal aborted, and leaves the connection', async () => {
    const fresh = createDb<unknown>({ url: database.url, poolSize: 1, applicationName: 'db-prepared-stale-transaction-test' });
    try {
      await sql`create table stale_in_transaction (id int primary key, role text)`.execute(fresh.db);
      await sql`insert into stale_in_transaction values (1, 'agent')`.execute(fresh.db);
      const read = (db: typeof fresh.db) =>
        sql<{ role: string }>`${prepared('read_role_in_transaction')} select role from stale_in_transaction where id = ${1}`.execute(db);
      const backend = async () => (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(fresh.db)).rows[0]?.pid;
      await read(fresh.db);
      const before = await backend();
      await sql`alter table stale_in_transaction alter column role type varchar(16)`.execute(fresh.db);
      // The statement's own refusal, not "current transaction is aborted" from running it again.
      await expect(fresh.db.transaction().execute((trx) => read(trx))).rejects.toMatchObject({ code: '0A000' });
      expect(await backend()).not.toBe(before);
      expect((await read(fresh.db)).rows).toEqual([{ role: 'agent' }]);
    } finally {
      await fresh.destroy();
    }
  });

  it('runs a marked statement unnamed, from then on, when the server does not keep prepared statements (a pooler in transaction mode)', async () => {
    const fresh = createDb<unknown>({ url: database.url, poolSize: 1, applicationName: 'db-prepared-pooler-test' });
    try {
      const triple = (value: number) =>
        sql<{ tripled: number }>`${prepared('triple')} select ${value}::int * 3 as tripled`.execute(fresh.db);
      expect((await triple(1)).rows).toEqual([{ tripled: 3 }]);
      // What a pooler does: the server connection no longer has the statement pg prepared on it.
      await sql`deallocate triple`.execute(fresh.db);
      expect((await triple(2)).rows).toEqual([{ tripled: 6 }]);
      expect((await triple(3)).rows).toEqual([{ tripled: 9 }]);
      const { rows } = await sql<{ name: string }>`select name from pg_prepared_statements`.execute(fresh.db);
      expect(rows).toEqual([]);
    } finally {
      await fresh.destroy();
    }
  });

  it('takes only plain lower-case names, and reads the name back from the start of a statement only', () => {
    expect(() => prepared('Robert"); drop table x; --')).toThrow(/not a statement name/);
    expect(() => prepared('')).toThrow(/not a statement name/);
    expect(preparedName('/* prepared store_batch */ with input as (select 1)')).toBe('store_batch');
    expect(preparedName('select 1 /* prepared store_batch */')).toBeUndefined();
    expect(preparedName('/* prepared */ select 1')).toBeUndefined();
    expect(preparedName('select 1')).toBeUndefined();
  });
});
