import { createDb, type Database, isConnectionError } from '@switchboard/db';
import { createTestDatabase, type TestDatabase } from '@switchboard/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** What one query through a fresh pool throws (the real `pg` error), or undefined. */
async function failureOf(url: string, query = sql`select 1`): Promise<unknown> {
  const handle: Database<unknown> = createDb({ url, poolSize: 1, applicationName: 'connection-errors-test' });
  try {
    await query.execute(handle.db);
    return undefined;
  } catch (error) {
    return error;
  } finally {
    await handle.destroy();
  }
}

describe('isConnectionError', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('db_conn_errors');
  });
  afterAll(async () => {
    await database.drop();
  });

  it('recognises a database host whose name does not resolve', async () => {
    const url = new URL(database.url);
    url.hostname = 'no-such-database-host.invalid';
    const error = await failureOf(url.toString());
    expect((error as { code?: string }).code).toBe('ENOTFOUND');
    expect(isConnectionError(error)).toBe(true);
  });

  it('recognises a port nobody listens on', async () => {
    const url = new URL(database.url);
    url.port = '1';
    expect(isConnectionError(await failureOf(url.toString()))).toBe(true);
  });

  it('recognises the server ending an idle session (57P05)', () => {
    expect(isConnectionError(Object.assign(new Error('terminating connection due to idle-session timeout'), { code: '57P05' }))).toBe(true);
  });

  it('does not take a query PostgreSQL refused for a connection problem', async () => {
    const error = await failureOf(database.url, sql`select 1 / 0`);
    expect((error as { code?: string }).code).toBe('22012');
    expect(isConnectionError(error)).toBe(false);
    expect(isConnectionError(new TypeError('x is undefined'))).toBe(false);
  });
});
