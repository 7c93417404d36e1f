import { createTestDatabase, type ServiceProcess, startService, type TestDatabase, uniqueSubjectPrefix } from '@switchboard/testing';
import { afterEach, beforeEach } from 'vitest';

/**
 * Auth services of each test's own, on a database and subject prefix of the test's own (so its
 * replicas meet nobody else's keys, users or counts): started with `start`, stopped after the
 * test, and the database dropped.
 */
export function authPerTest(label: string) {
  let database: TestDatabase | undefined;
  let prefix = '';
  let started: ServiceProcess[] = [];

  beforeEach(async () => {
    database = await createTestDatabase(label);
    prefix = uniqueSubjectPrefix();
  });

  afterEach(async () => {
    await Promise.all(started.map((service) => service.stop()));
    started = [];
    await database?.drop();
  });

  const current = (): TestDatabase => {
    if (!database) throw new Error('authPerTest: no test is running');
    return database;
  };

  return {
    get databaseUrl(): string {
      return current().url;
    },
    get prefix(): string {
      return prefix;
    },
    /** Starts a replica on the test's database and prefix, with `env` on top. */
    async start(env: Record<string, string> = {}): Promise<ServiceProcess> {
      const service = await startService('auth', { env: { DATABASE_URL: current().url, NATS_SUBJECT_PREFIX: prefix, ...env } });
      started.push(service);
      return service;
    },
  };
}
