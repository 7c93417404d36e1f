import { createTestDatabase, type TestDatabase } from '@switchboard/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onlyPostgresProcesses, postgresBackendPids } from '../src/drivers/switchboard.js';

let database: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  database = await createTestDatabase('bench_pids');
  client = new pg.Client({ connectionString: database.url });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await database?.drop();
});

describe('postgresBackendPids', () => {
  it("counts the database's backends and the server's WAL writer, checkpointer and background writer", async () => {
    const pids = await postgresBackendPids(database.url);
    const { rows } = await client.query<{ pid: number; backend_type: string }>(
      `select pid, backend_type from pg_stat_activity where backend_type in ('walwriter', 'checkpointer', 'background writer')`,
    );
    expect(rows.map((row) => row.backend_type).sort()).toEqual(['background writer', 'checkpointer', 'walwriter']);
    for (const row of rows) expect(pids, row.backend_type).toContain(row.pid);
    const own = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
    expect(pids).toContain(own.rows[0]?.pid);
  });

  it("drops pids that are not PostgreSQL's on this machine, as a containerised server's are", async () => {
    const own = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
    const backend = own.rows[0]?.pid ?? 0;
    expect(onlyPostgresProcesses([backend, process.pid, 2 ** 22 + 1])).toEqual([backend]);
  });
});
