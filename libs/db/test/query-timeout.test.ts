import { createDb, type Database, isConnectFailure, isConnectionError, isPassingFailure } from '@switchboard/db';
import { createTestDatabase, TcpProxy, type TestDatabase, waitFor } from '@switchboard/testing';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let database: TestDatabase;
let proxy: TcpProxy | undefined;
let handle: Database<unknown> | undefined;

beforeAll(async () => {
  database = await createTestDatabase('db_query_timeout');
});

afterAll(async () => {
  await handle?.destroy();
  await proxy?.close();
  await database.drop();
});

describe('queryTimeoutMs', () => {
  it('fails a statement its connection never answers as a connection error, and runs the next on a new connection', async () => {
    proxy = await TcpProxy.toPostgres(database.url);
    handle = createDb<unknown>({
      url: proxy.url(database.url),
      poolSize: 1,
      applicationName: 'db-query-timeout-test',
      queryTimeoutMs: 500,
    });
    expect((await sql<{ one: number }>`select 1 as one`.execute(handle.db)).rows).toEqual([{ one: 1 }]);

    expect(proxy.partition()).toBe(1); // the pool's one connection now hangs
    const error = await sql`select 2`.execute(handle.db).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(Error);
    expect(isConnectionError(error)).toBe(true);

    // Retried, as persistence does: the hung connection was thrown away, so this one is new.
    expect((await sql<{ three: number }>`select 3 as three`.execute(handle.db)).rows).toEqual([{ three: 3 }]);
  });

  it('fails a new connection whose session settings time out, rather than hand it out to wait a second timeout', async () => {
    const hanging = await TcpProxy.toPostgres(database.url);
    const fresh = createDb<unknown>({
      url: hanging.url(database.url),
      poolSize: 1,
      applicationName: 'db-query-timeout-settings-test',
      queryTimeoutMs: 300, // which sets statement_timeout on each new connection
    });
    try {
      hanging.hangWhen(TcpProxy.startsAStatement); // the connection opens; set_config hangs
      const error = await sql`select 1`.execute(fresh.db).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      // Before, the timeout was ignored and the connection handed out: the statement then failed
      // at its own timeout, on the hung connection, after twice the wait.
      expect(isConnectFailure(error), String(error)).toBe(true);
      expect(isPassingFailure(error)).toBe(true);
      hanging.restore();
      expect((await sql<{ timeout: string }>`select current_setting('statement_timeout') as timeout`.execute(fresh.db)).rows).toEqual([
        { timeout: expect.stringMatching(/s$/) },
      ]);
    } finally {
      await fresh.destroy();
      await hanging.close();
    }
  });

  it('leaves no statement waiting on the server once the client has given up on it', async () => {
    const holder = new pg.Client({ connectionString: database.url });
    const monitor = new pg.Client({ connectionString: database.url });
    await holder.connect();
    await monitor.connect();
    await holder.query('create table counters (id int primary key, n int not null)');
    await holder.query('insert into counters values (1, 0)');
    const applicationName = 'db-query-timeout-lock-test';
    const timed = createDb<unknown>({ url: database.url, poolSize: 2, applicationName, queryTimeoutMs: 300 });
    try {
      await holder.query('begin');
      await holder.query('select * from counters where id = 1 for update');
      for (let i = 0; i < 3; i++) {
        const error = await sql`update counters set n = n + 1 where id = 1`.execute(timed.db).then(
          () => undefined,
          (caught: unknown) => caught,
        );
        expect(isConnectionError(error)).toBe(true);
      }
      // Within the server's margin of a second, every statement the client gave up on is gone.
      // (Asked from outside the holder's transaction, which would see one snapshot of the activity.)
      await waitFor(
        async () => {
          const { rows } = await monitor.query(
            "select count(*)::int as waiting from pg_stat_activity where application_name = $1 and state = 'active'",
            [applicationName],
          );
          return rows[0].waiting === 0;
        },
        5_000,
        'the abandoned statements to end on the server',
      );
      await holder.query('commit');
      const { rows } = await holder.query('select n from counters where id = 1');
      expect(rows[0].n).toBe(0);
    } finally {
      await holder.query('rollback').catch(() => undefined);
      await holder.end();
      await monitor.end();
      await timed.destroy();
    }
  });
});
