import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createTestDatabase, REPO_ROOT, type TestDatabase } from '@switchboard/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);

async function count(url: string, table: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return Number((await client.query(`select count(*) as n from ${table}`)).rows[0].n);
  } finally {
    await client.end();
  }
}

describe('npm run migrate (auth)', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('auth_migrate');
  });
  afterAll(async () => {
    await database.drop();
  });

  it('creates the schema and stores no signing key: that is for the service, which knows whether one is configured', async () => {
    const env = { PATH: process.env.PATH, DATABASE_URL: database.url, LOG_LEVEL: 'warn' };
    await run(process.execPath, ['services/auth/dist/migrate.js'], { cwd: REPO_ROOT, env });
    expect(await count(database.url, 'users')).toBe(0);
    expect(await count(database.url, 'signing_keys')).toBe(0);
  });
});
