import { createDb, type Database, isConnectionError } from '@switchboard/db';
import { createTestDatabase, TcpProxy, type TestDatabase } from '@switchboard/testing';
import { sql } from 'kysely';
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
    const { hostname, port } = new URL(database.url);
    proxy = await TcpProxy.start({ host: hostname, port: Number(port || 5432) });
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
});
