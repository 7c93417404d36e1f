import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createTestDatabase, query, REPO_ROOT, TcpProxy, type TestDatabase, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The Helm chart's migrations hook runs `node services/auth/dist/migrate.js`, then persistence's.
 * A database that does not answer yet (made in the same install, failing over during an upgrade)
 * must be waited for, as the services wait for it: before, each script exited 1 at once, and the
 * Job failed after its few retries (about 70 s).
 */

let database: TestDatabase;
let proxy: TcpProxy;
const children: ChildProcess[] = [];

beforeAll(async () => {
  database = await createTestDatabase('migrations_hook');
  proxy = await TcpProxy.toPostgres(database.url);
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await proxy?.close();
  await database?.drop();
});

function runScript(entry: string): { child: ChildProcess; output: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [entry], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH, DATABASE_URL: proxy.url(database.url), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  return { child, output: () => output, exit };
}

describe('the migrations hook', () => {
  it.each([
    ['auth', 'services/auth/dist/migrate.js', 'users'],
    ['persistence', 'services/persistence/dist/migrate.js', 'messages'],
  ])("%s's migrate waits for a database that refuses connections, then migrates and exits 0", async (_service, entry, table) => {
    proxy.cut();
    const script = runScript(entry);
    await waitFor(
      () => {
        if (script.child.exitCode !== null) throw new Error(`exited ${script.child.exitCode} without waiting:\n${script.output()}`);
        return script.output().includes('waiting for PostgreSQL');
      },
      15_000,
      'the script to wait for PostgreSQL',
    );
    expect(script.child.exitCode).toBeNull();

    proxy.restore();
    expect(await script.exit).toBe(0);
    expect(await query(database.url, `select count(*) from ${table}`)).toEqual([{ count: '0' }]);
  });
});
