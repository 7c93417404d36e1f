import { createDb, type Database } from '@switchboard/db';
import { createTestDatabase, TcpProxy, type TestDatabase, waitFor } from '@switchboard/testing';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

let database: TestDatabase;
let admin: pg.Client;
const opened: { end(): Promise<unknown> }[] = [];

beforeAll(async () => {
  database = await createTestDatabase('db_close');
  admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  await admin.query('create table counters (id int primary key, value int not null)');
  await admin.query('insert into counters values (1, 0)');
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((resource) => resource.end().catch(() => undefined)));
});

afterAll(async () => {
  await admin?.end();
  await database?.drop();
});

/** What `promise` failed with, or undefined. */
const failureOf = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  );

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await run();
  return { value, ms: performance.now() - started };
}

describe('destroy()', () => {
  it('cancels a statement that outlasts closeTimeoutMs instead of waiting for it, and the statement commits nothing', async () => {
    // Another transaction holds the row, so the update waits for its lock, as a batch can.
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    opened.push(holder);
    await holder.query('begin');
    await holder.query('select * from counters where id = 1 for update');

    const handle: Database<unknown> = createDb({ url: database.url, poolSize: 1, applicationName: 'db-close-lock', closeTimeoutMs: 300 });
    const update = failureOf(sql`update counters set value = value + 1 where id = 1`.execute(handle.db));
    await waitFor(
      async () =>
        (await admin.query(`select 1 from pg_stat_activity where application_name = 'db-close-lock' and wait_event_type = 'Lock'`))
          .rowCount === 1,
      5_000,
      'the update to wait for the row lock',
    );

    const { ms } = await timed(() => handle.destroy());
    expect(ms).toBeLessThan(2_500);
    expect((await update) as { code?: string }).toMatchObject({ code: '57014' });

    // Released, the lock would have let a statement that was only disconnected commit.
    await holder.query('rollback');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await admin.query('select value from counters where id = 1')).rows).toEqual([{ value: 0 }]);
  });

  it('closes the connection of a statement the server never answers', async () => {
    const proxy = await TcpProxy.toPostgres(database.url);
    opened.push({ end: () => proxy.close() });
    const handle: Database<unknown> = createDb({
      url: proxy.url(database.url),
      poolSize: 1,
      applicationName: 'db-close-partition',
      closeTimeoutMs: 300,
    });
    await sql`select 1`.execute(handle.db);
    expect(proxy.partition()).toBeGreaterThanOrEqual(1); // the pool's connection, and the health probe's if it has one
    const hung = failureOf(sql`select 2`.execute(handle.db));
    await new Promise((resolve) => setTimeout(resolve, 200)); // sent, on the connection that passes nothing

    const { ms } = await timed(() => handle.destroy());
    expect(ms).toBeGreaterThanOrEqual(300);
    expect(ms).toBeLessThan(3_000);
    expect(await hung).toBeInstanceOf(Error);
  });

  it('does not wait when nothing is running', async () => {
    const handle: Database<unknown> = createDb({ url: database.url, poolSize: 2, applicationName: 'db-close-idle' });
    await sql`select 1`.execute(handle.db);
    const { ms } = await timed(() => handle.destroy());
    expect(ms).toBeLessThan(1_000);
  });
});
