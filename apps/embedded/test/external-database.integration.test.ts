import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, query, type ServiceProcess, startProcess, TcpProxy, type TestDatabase, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedEnv } from './support.js';

/**
 * The one process on a PostgreSQL server (`DATABASE_URL`), reached through a proxy that can
 * silence its connections as a network partition does.
 */
const dataDir = mkdtempSync(join(tmpdir(), 'switchboard-embedded-external-'));
let database: TestDatabase;
let proxy: TcpProxy;
let system: ServiceProcess;
let env: Record<string, string>;

beforeAll(async () => {
  database = await createTestDatabase('embedded_external');
  proxy = await TcpProxy.toPostgres(database.url);
  env = {
    ...(await embeddedEnv(dataDir)),
    DATABASE_URL: proxy.url(database.url),
    DATABASE_POOL_SIZE: '3',
    ADMIN_USERNAME: 'ops-admin',
    ADMIN_PASSWORD: 'ops-admin-password',
    DEMO_AGENT_USERNAME: 'ops-agent',
    DEMO_AGENT_PASSWORD: 'ops-agent-password',
  };
  system = await startProcess('embedded', 'apps/embedded/dist/main.js', { env, readyTimeoutMs: 60_000 });
  await waitFor(() => system.logs.some((line) => line.includes('Switchboard is running')), 10_000, 'the banner');
});

afterAll(async () => {
  await system?.stop();
  await proxy?.close();
  await database?.drop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Logs in as the admin; gives up after `waitMs`. */
async function login(waitMs = 50_000): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${env.AUTH_PORT}/v1/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'ops-admin', password: 'ops-admin-password' }),
    signal: AbortSignal.timeout(waitMs),
  });
  await response.arrayBuffer();
  return response.status;
}

describe('the all-in-one process on a PostgreSQL server', () => {
  it('creates the admin and the agent it is given and no account with a documented password', async () => {
    const rows = await query<{ username: string; role: string }>(database.url, 'select username, role from users order by username');
    expect(rows).toEqual([
      { username: 'ops-admin', role: 'admin' },
      { username: 'ops-agent', role: 'agent' },
    ]);
  });

  it('names the agent in its banner without printing a password the operator chose', () => {
    const output = system.logs.join('\n');
    expect(output).toContain('demo agent: ops-agent, password in DEMO_AGENT_PASSWORD');
    expect(output).not.toContain('ops-agent-password');
    expect(output).not.toContain('ops-admin-password');
  });

  it('opens no more connections for auth than DATABASE_POOL_SIZE', async () => {
    // Each login runs three statements at once: twelve at once, queued on auth's three connections.
    expect(await Promise.all(Array.from({ length: 4 }, () => login()))).toEqual([200, 200, 200, 200]);
    const [row] = await query<{ connections: number }>(
      database.url,
      "select count(*)::int as connections from pg_stat_activity where datname = $1 and application_name = 'switchboard-auth'",
      [database.name],
    );
    expect(row?.connections).toBeGreaterThan(0);
    expect(row?.connections).toBeLessThanOrEqual(3);
  });

  it('fails a login whose connection stops answering after the query timeout, and the next one succeeds', { timeout: 90_000 }, async () => {
    // The pool's connections have just been used, so they are open and idle when they are silenced.
    expect(await login()).toBe(200);
    expect(proxy.partition()).toBeGreaterThanOrEqual(1);

    const started = Date.now();
    const outcome = await login().catch((error: unknown) => (error instanceof Error ? error.name : String(error)));
    // Cut short by auth's 10 s query timeout; without one it waited until TCP gave up, about 15 minutes.
    expect(outcome).toBe(503);
    expect(Date.now() - started).toBeLessThan(40_000);

    // The silenced connections were thrown away: the next login opens new ones.
    expect(await login()).toBe(200);
  });
});

describe('the all-in-one process started before its PostgreSQL server answers', () => {
  it('waits for it as the services do, then starts without exiting', { timeout: 90_000 }, async () => {
    const lateDir = mkdtempSync(join(tmpdir(), 'switchboard-embedded-late-'));
    const late = await TcpProxy.toPostgres(database.url);
    late.cut();
    let waiting: ServiceProcess | undefined;
    try {
      waiting = await startProcess('embedded-late', 'apps/embedded/dist/main.js', {
        env: { ...env, ...(await embeddedEnv(lateDir)), DATABASE_URL: late.url(database.url), DATABASE_POOL_SIZE: '3' },
        waitReady: false,
      });
      const { logs, child } = waiting;
      await waitFor(
        () => logs.some((line) => line.includes('waiting for PostgreSQL')) || child.exitCode !== null,
        20_000,
        'a wait, or an exit',
      );
      // Before: "failed to start" at the first refused connection, and exit 1.
      expect(child.exitCode, logs.join('\n')).toBeNull();
      late.restore();
      await waiting.ready(60_000);
      await waitFor(() => logs.some((line) => line.includes('Switchboard is running')), 10_000, 'the banner');
    } finally {
      await waiting?.stop();
      await late.close();
      rmSync(lateDir, { recursive: true, force: true });
    }
  });
});
