import { createDb, type Database, isConnectFailure, isConnectionError, isDatabaseUnavailable, isPassingFailure } from '@switchboard/db';
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

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase('db_conn_errors');
});
afterAll(async () => {
  await database.drop();
});

/** An error with a SQLSTATE, as pg gives one for what the server answered. */
const withCode = (code: string) => Object.assign(new Error(`SQLSTATE ${code}`), { code });

describe('isConnectionError', () => {
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

  it('goes by the SQLSTATE of what the server refused, not by input its message quotes', async () => {
    const error = await failureOf(database.url, sql`select 'ECONNRESET: Connection terminated'::int`);
    expect((error as { code?: string }).code).toBe('22P02');
    expect((error as Error).message).toContain('ECONNRESET');
    // Before: a lost connection, and a batch failing so was retried for ever.
    expect(isConnectionError(error)).toBe(false);
    expect(isDatabaseUnavailable(error)).toBe(false);
  });
});

describe('isDatabaseUnavailable', () => {
  it('recognises a write refused by a read-only server (25006), which a failover to a standby gives', async () => {
    const url = new URL(database.url);
    url.searchParams.set('options', '-c default_transaction_read_only=on');
    const error = await failureOf(url.toString(), sql`create table written_while_read_only (id int)`);
    expect((error as { code?: string }).code).toBe('25006');
    expect(isDatabaseUnavailable(error)).toBe(true);
    // The connection itself is fine; only the server cannot take writes.
    expect(isConnectionError(error)).toBe(false);
  });

  it('recognises insufficient resources, system errors and the server going down', () => {
    for (const code of ['53100', '53200', '53300', '58000', '58030', '58P01', '57P01', '57P02', '57P03', '57P04', '57P05', '08006'])
      expect(isDatabaseUnavailable(withCode(code)), code).toBe(true);
    expect(isDatabaseUnavailable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))).toBe(true);
  });

  it('does not take a statement PostgreSQL refused, nor one past a configured limit (53400), for the server being unavailable', async () => {
    // 53400 (temp_file_limit, say) comes back for the same statement every time: retried, it would hold up everything behind it.
    for (const code of ['53400', '23505', '22P02', '42P01', '40001', '57014', '25P02', '5', ''])
      expect(isDatabaseUnavailable(withCode(code)), code).toBe(false);
    expect(isDatabaseUnavailable(await failureOf(database.url, sql`select 1 / 0`))).toBe(false);
    expect(isDatabaseUnavailable(new TypeError('x is undefined'))).toBe(false);
    expect(isDatabaseUnavailable(undefined)).toBe(false);
  });
});

describe('isConnectFailure', () => {
  it('recognises a login the server refused (class 28), which says nothing of the statement', async () => {
    // As after the role's password was rotated, or its LOGIN revoked, while the service ran.
    const url = new URL(database.url);
    url.username = 'no_such_role_for_connection_errors';
    const error = await failureOf(url.toString());
    expect((error as { code?: string }).code).toBe('28000');
    // Before: neither, so persistence took it for the batch's fault and set messages aside.
    expect(isConnectFailure(error)).toBe(true);
    expect(isDatabaseUnavailable(error)).toBe(false);
    // What a service at work waits out, as it does an unreachable database.
    expect(isPassingFailure(error)).toBe(true);
  });

  it('recognises any connection that could not be opened, and no statement the server refused', async () => {
    const url = new URL(database.url);
    url.port = '1';
    expect(isConnectFailure(await failureOf(url.toString()))).toBe(true);
    expect(isConnectFailure(await failureOf(database.url, sql`select 1 / 0`))).toBe(false);
    expect(isPassingFailure(await failureOf(database.url, sql`select 1 / 0`))).toBe(false);
    expect(isConnectFailure(withCode('28P01'))).toBe(false); // not from the pool's connect
  });
});
