import {
  createTestDatabase,
  type ServiceProcess,
  startService,
  TcpProxy,
  type TestDatabase,
  uniqueSubjectPrefix,
  waitFor,
} from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** Auth with its database behind a proxy that can cut or silence the connections. */
const ADMIN = { username: 'outage-admin', password: 'correct horse battery staple' };

let database: TestDatabase;
let proxy: TcpProxy;
let auth: ServiceProcess;

const login = async () => {
  const response = await fetch(auth.url('/v1/token'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(ADMIN),
  });
  return {
    status: response.status,
    retryAfter: response.headers.get('retry-after'),
    body: (await response.json()) as { error?: { code: string } },
  };
};

beforeAll(async () => {
  database = await createTestDatabase('auth_outage');
  proxy = await TcpProxy.toPostgres(database.url);
  auth = await startService('auth', {
    env: {
      DATABASE_URL: proxy.url(database.url),
      NATS_SUBJECT_PREFIX: uniqueSubjectPrefix(),
      ADMIN_USERNAME: ADMIN.username,
      ADMIN_PASSWORD: ADMIN.password,
    },
  });
});

afterAll(async () => {
  await auth?.stop();
  await proxy?.close();
  await database?.drop();
});

describe('auth while PostgreSQL is unreachable', () => {
  it('answers 503 with Retry-After, not 500, and logs in again once the database is back', async () => {
    expect((await login()).status).toBe(200);
    proxy.cut();
    try {
      const refused = await login();
      expect(refused.status).toBe(503);
      expect(refused.retryAfter).toBe('5');
      expect(refused.body.error?.code).toBe('unavailable');
    } finally {
      proxy.restore();
    }
    await waitFor(async () => (await login()).status === 200, 15_000, 'a login after the database came back');
  });

  it('fails a login whose connection hangs after the query timeout (10 s), not when TCP gives up', async () => {
    expect((await login()).status).toBe(200);
    // The pool's connections stay open but pass nothing; new ones work.
    expect(proxy.partition()).toBeGreaterThan(0);
    expect((await login()).status).toBe(503);
    await waitFor(async () => (await login()).status === 200, 25_000, 'a login on a new connection');
  }, 60_000);
});
