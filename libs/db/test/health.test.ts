import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { createDb, type Database } from '@switchboard/db';
import { createTestDatabase, TcpProxy, type TestDatabase, waitFor } from '@switchboard/testing';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

let database: TestDatabase;
const handles: Database<unknown>[] = [];
const servers: Server[] = [];
const proxies: TcpProxy[] = [];

beforeAll(async () => {
  database = await createTestDatabase('db_health');
});

afterEach(async () => {
  await Promise.all(handles.splice(0).map((handle) => handle.destroy()));
  for (const server of servers.splice(0)) server.close();
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

afterAll(async () => {
  await database.drop();
});

/**
 * A probe every `intervalMs`, each with as long to answer: short, so that a database that fails
 * is seen soon; longer where a test asserts that one that answers stays healthy, so that a
 * busy test machine does not read as a database that hangs.
 */
function open(url: string, poolSize = 2, intervalMs = 100): Database<unknown> {
  const handle = createDb<unknown>({ url, poolSize, applicationName: 'db-health-test', healthProbeIntervalMs: intervalMs });
  handles.push(handle);
  return handle;
}

/** A TCP server that accepts connections and never says a word: a database that hangs. */
async function silentServer(): Promise<{ url: string; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => sockets.push(socket));
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  server.on('close', () => {
    for (const socket of sockets) socket.destroy();
  });
  return { url: `postgres://postgres@127.0.0.1:${port}/test`, sockets };
}

/** A proxy to the real PostgreSQL whose connections the test can reset. */
async function resettableProxy(target: string): Promise<{ url: string; reset: () => void }> {
  const proxy = await TcpProxy.toPostgres(target);
  proxies.push(proxy);
  return { url: proxy.url(target), reset: () => proxy.reset() };
}

describe('a connection lost while in use', () => {
  it('fails the queries on it, turns unhealthy and does not crash the process', async () => {
    const proxy = await resettableProxy(database.url);
    const handle = open(proxy.url, 2);
    // Both pool connections are checked out, in queries, when the database goes away.
    const inFlight = [sql`select pg_sleep(5)`.execute(handle.db), sql`select pg_sleep(5)`.execute(handle.db)];
    const settled = Promise.allSettled(inFlight);
    await new Promise((resolve) => setTimeout(resolve, 300));
    proxy.reset();
    const outcomes = await settled;
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected']);
    await waitFor(() => !handle.isHealthy(), 10_000, 'unhealthy after the reset');
  });
});

describe('a connection the server ends for being idle', () => {
  it('leaves the database healthy: the pool opens another when it needs one', async () => {
    const handle = createDb<unknown>({
      url: database.url,
      poolSize: 2,
      applicationName: 'db-health-test',
      // A probe too seldom to mend what a connection's end would spoil.
      healthProbeIntervalMs: 60_000,
      settings: { idle_session_timeout: '200ms' },
    });
    handles.push(handle);
    await sql`select 1`.execute(handle.db);
    const name = 'db-health-test';
    const admin = createDb<unknown>({ url: database.url, applicationName: 'db-health-admin' });
    try {
      await waitFor(
        async () => {
          const { rows } = await sql<{ n: number }>`
            select count(*)::int as n from pg_stat_activity where application_name = ${name} and datname = current_database()
          `.execute(admin.db);
          return rows[0]?.n === 0;
        },
        5_000,
        'the server to end the idle connection',
      );
    } finally {
      await admin.destroy();
    }
    // The pool hears of the end a moment after the server has let the connection go.
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Before, any connection's end turned the pool unhealthy until the next probe.
    expect(handle.isHealthy()).toBe(true);
    expect((await sql<{ two: number }>`select 2 as two`.execute(handle.db)).rows).toEqual([{ two: 2 }]);
  });
});

describe('the database health probe', () => {
  it('turns unhealthy while the database cannot take writes, and healthy again after', async () => {
    const handle = open(database.url);
    await waitFor(() => handle.isHealthy(), 5_000, 'healthy at first');
    const name = new URL(database.url).pathname.slice(1);
    const admin = new URL(database.url);
    admin.pathname = '/postgres';
    const setReadOnly = async (readOnly: boolean) => {
      const other = createDb<unknown>({ url: admin.toString(), applicationName: 'db-health-admin' });
      try {
        await sql
          .raw(`alter database "${name}" ${readOnly ? 'set default_transaction_read_only = on' : 'reset default_transaction_read_only'}`)
          .execute(other.db);
        // The setting applies to new sessions: the probe's is ended, and its next one reads it.
        await sql`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'db-health-test:health'`.execute(
          other.db,
        );
      } finally {
        await other.destroy();
      }
    };
    await setReadOnly(true);
    try {
      await waitFor(() => !handle.isHealthy(), 10_000, 'unhealthy on a read-only database');
    } finally {
      await setReadOnly(false);
    }
    await waitFor(() => handle.isHealthy(), 10_000, 'healthy once writable again');
  });

  it('stays healthy against a database that answers', async () => {
    const handle = open(database.url, 2, 500);
    await new Promise((resolve) => setTimeout(resolve, 1_600));
    expect(handle.isHealthy()).toBe(true);
  });

  it('turns unhealthy when the database refuses connections', async () => {
    const { url } = await silentServer();
    const closed = servers.pop() as Server;
    closed.close();
    await once(closed, 'close');
    const handle = open(url);
    await waitFor(() => !handle.isHealthy(), 10_000, 'unhealthy after refused connections');
  });

  it('turns unhealthy when the database accepts but never answers', async () => {
    const { url, sockets } = await silentServer();
    const handle = open(url);
    await waitFor(() => !handle.isHealthy(), 10_000, 'unhealthy after a hung probe');
    expect(sockets.length).toBeGreaterThan(0);
  });

  it('is not held up by an application pool whose every connection is busy', async () => {
    const handle = open(database.url, 1, 500);
    // The only pool connection sits in a long query for the whole check.
    const busy = sql`select pg_sleep(3)`.execute(handle.db);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(handle.isHealthy()).toBe(true);
    await busy;
  });
});
