import { once } from 'node:events';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { createDb, type Database, isConnectionError } from '@switchboard/db';
import { createTestDatabase, type TestDatabase } from '@switchboard/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let database: TestDatabase;
let server: Server | undefined;
let handle: Database<unknown> | undefined;

beforeAll(async () => {
  database = await createTestDatabase('db_query_timeout');
});

afterAll(async () => {
  await handle?.destroy();
  server?.close();
  await database.drop();
});

/**
 * A TCP proxy to the real PostgreSQL that can silence the connections it has made so far: they
 * stay open but pass nothing either way, as across a network partition. Later ones work.
 */
async function partitioningProxy(target: string): Promise<{ url: string; partition: () => void; silenced: () => number }> {
  const live = new Set<{ client: Socket; upstream: Socket; silent: boolean }>();
  let silenced = 0;
  server = createServer((client) => {
    const upstream = tcpConnect(Number(new URL(target).port || 5432), new URL(target).hostname);
    const pair = { client, upstream, silent: false };
    live.add(pair);
    client.on('data', (chunk) => pair.silent || upstream.write(chunk));
    upstream.on('data', (chunk) => pair.silent || client.write(chunk));
    for (const socket of [client, upstream])
      socket
        .on('error', () => undefined)
        .on('close', () => {
          client.destroy();
          upstream.destroy();
          live.delete(pair);
        });
  });
  server.on('close', () => {
    for (const { client, upstream } of live) {
      client.destroy();
      upstream.destroy();
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const url = new URL(target);
  url.port = String(typeof address === 'object' && address ? address.port : 0);
  return {
    url: url.toString(),
    partition: () => {
      for (const pair of live) {
        if (!pair.silent) silenced++;
        pair.silent = true;
      }
    },
    silenced: () => silenced,
  };
}

describe('queryTimeoutMs', () => {
  it('fails a statement its connection never answers as a connection error, and runs the next on a new connection', async () => {
    const proxy = await partitioningProxy(database.url);
    handle = createDb<unknown>({ url: proxy.url, poolSize: 1, applicationName: 'db-query-timeout-test', queryTimeoutMs: 500 });
    expect((await sql<{ one: number }>`select 1 as one`.execute(handle.db)).rows).toEqual([{ one: 1 }]);

    proxy.partition(); // the pool's one connection now hangs
    expect(proxy.silenced()).toBe(1);
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
