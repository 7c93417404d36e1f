import { createTestDatabase, type ServiceName, startThroughOutages, type TestDatabase } from '@switchboard/testing';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * Services whose start waits for PostgreSQL and NATS, each as it needs it, whatever order they
 * come and go in: a cluster coming back after an outage starts them in any order.
 */

const databases: TestDatabase[] = [];

afterAll(async () => {
  await Promise.all(databases.map((database) => database.drop()));
});

describe('a service started while its dependencies come and go', () => {
  it.each<ServiceName>(['auth', 'persistence'])(
    '%s waits for PostgreSQL again when it goes away while the start waits for NATS',
    async (name) => {
      const database = await createTestDatabase(`${name}_start_waits`);
      databases.push(database);
      const through = await startThroughOutages(name, database.url);
      try {
        // Before: its second step on the database (migrating on its own pool) failed, and it exited 1.
        const waited = { exitCode: null, waitedForDatabaseAfterNats: true, readyz: 200 };
        expect(through.outcome, through.service.logs.join('\n')).toEqual(waited);
      } finally {
        await through.close();
      }
    },
    90_000,
  );
});
