import {
  createTestDatabase,
  httpStatus,
  type ServiceProcess,
  startService,
  TcpProxy,
  type TestDatabase,
  uniqueSubjectPrefix,
  waitFor,
} from '@switchboard/testing';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * Persistence started while PostgreSQL cannot be reached. Before, the start failed (exit 1) at
 * the first refused connection, and Kubernetes restarted the pod with a back-off that grew.
 */

let database: TestDatabase | undefined;
let proxy: TcpProxy | undefined;
let persistence: ServiceProcess | undefined;

afterAll(async () => {
  await persistence?.stop();
  await proxy?.close();
  await database?.drop();
});

describe('persistence started while PostgreSQL cannot be reached', () => {
  it('is alive but not ready while it waits, then migrates and is ready without a restart', async () => {
    database = await createTestDatabase('persistence_start_without_database');
    proxy = await TcpProxy.toPostgres(database.url);
    proxy.cut();
    persistence = await startService('persistence', {
      env: { DATABASE_URL: proxy.url(database.url), NATS_SUBJECT_PREFIX: uniqueSubjectPrefix() },
      waitReady: false,
    });
    const running = persistence;

    await waitFor(() => running.logs.some((line) => line.includes('waiting for PostgreSQL')), 10_000, 'the wait to be logged');
    expect(await httpStatus(running.opsUrl('/healthz'))).toBe(200);
    expect(await httpStatus(running.opsUrl('/readyz'))).toBe(503);
    expect(running.child.exitCode).toBeNull();

    proxy.restore();
    await waitFor(async () => (await httpStatus(running.opsUrl('/readyz'))) === 200, 30_000, 'persistence to be ready');
    expect(running.logs.some((line) => line.includes('migration applied'))).toBe(true);
    expect(running.child.exitCode).toBeNull();
  }, 60_000);

  it('gives the start up on SIGTERM while it waits, as aborted rather than failed', async () => {
    const target = 'postgres://postgres@127.0.0.1:5432/test';
    const waiting = await TcpProxy.toPostgres(target);
    waiting.cut();
    let stopped: ServiceProcess | undefined;
    try {
      stopped = await startService('persistence', {
        env: { DATABASE_URL: waiting.url(target), NATS_SUBJECT_PREFIX: uniqueSubjectPrefix() },
        waitReady: false,
      });
      const { logs, child, exited } = stopped;
      await waitFor(() => logs.some((line) => line.includes('waiting for PostgreSQL')), 10_000, 'the wait to be logged');
      child.kill('SIGTERM');
      // Exit 0 (contract §1), as any start given up on (libs/runtime), at once: the wait ends with the signal.
      expect(await exited).toBe(0);
      expect(logs.some((line) => line.includes('start-up was aborted'))).toBe(true);
      expect(logs.filter((line) => line.includes('"level":"fatal"'))).toEqual([]);
    } finally {
      await stopped?.kill();
      await waiting.close();
    }
  }, 30_000);
});
