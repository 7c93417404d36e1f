import { createTestDatabase, type ServiceProcess, serverVersion, startService, type TestDatabase } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Auth on a database whose collation lowers case the Turkish way ('I' to a dotless 'ı'), which
 * the service, lowering in JavaScript, does not. Made with ICU's `tr` (PostgreSQL 15 and later
 * choose a database's collation provider).
 */

let database: TestDatabase | undefined;
let auth: ServiceProcess | undefined;
const icuDatabases = (await serverVersion()) >= 150_000;

beforeAll(async () => {
  if (!icuDatabases) return;
  database = await createTestDatabase('auth_turkish', "template template0 locale_provider icu icu_locale 'tr' locale 'C.UTF-8'");
  auth = await startService('auth', { env: { DATABASE_URL: database.url, NATS_SUBJECT_PREFIX: `turkish${process.pid}` } });
});

afterAll(async () => {
  await auth?.stop();
  await database?.drop();
});

async function post(path: string, body: unknown): Promise<number> {
  const response = await fetch(auth?.url(path) ?? '', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  await response.arrayBuffer();
  return response.status;
}

describe.skipIf(!icuDatabases)('usernames on a database with a Turkish collation', () => {
  it('logs in a name with a capital I, in any case, and keeps names unique regardless of case', async () => {
    expect(await post('/v1/users', { username: 'Ivan', password: 'ivan-password' })).toBe(201);
    // Before: 401 each, the name stored lowering to "ıvan" and the one looked up to "ivan".
    expect(await post('/v1/token', { username: 'Ivan', password: 'ivan-password' })).toBe(200);
    expect(await post('/v1/token', { username: 'ivan', password: 'ivan-password' })).toBe(200);
    expect(await post('/v1/token', { username: 'IVAN', password: 'ivan-password' })).toBe(200);
    // Before: 201, a second "ivan".
    expect(await post('/v1/users', { username: 'ivan', password: 'other-password' })).toBe(409);
  });
});
