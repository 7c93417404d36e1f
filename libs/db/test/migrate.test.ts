import { Writable } from 'node:stream';
import { createDb, isDatabaseUnavailable, migrateToLatest } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createTestDatabase, type TestDatabase } from '@switchboard/testing';
import { type Kysely, type Migration, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase('db_migrate');
});

afterAll(async () => {
  await database.drop();
});

const createTable = (name: string): Migration => ({
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable(name)
      .addColumn('id', 'integer', (column) => column.primaryKey())
      .execute();
  },
});

/** A logger whose lines are kept, parsed. */
function recordingLogger() {
  const lines: { level: string; msg: string; newer?: string[] }[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: createLogger({ name: 'migrate-test', level: 'info', destination }), lines };
}

describe('migrateToLatest', () => {
  it('lets a release start on a schema a newer release has migrated, and migrates one behind it', async () => {
    const { db, destroy } = createDb<unknown>({ url: database.url, applicationName: 'db-migrate-test' });
    try {
      const older = { '0001_first': createTable('first_table') };
      const newer = { ...older, '0002_second': createTable('second_table') };
      const quiet = createLogger({ name: 'migrate-test', level: 'silent' });

      await migrateToLatest(db, { owner: 'rollback', migrations: newer, logger: quiet });
      // After a rollback, or an old pod restarting mid-rollout: the older release's migrations.
      const { logger, lines } = recordingLogger();
      let ranAfter = false;
      await migrateToLatest(db, {
        owner: 'rollback',
        migrations: older,
        logger,
        afterMigrate: async () => {
          ranAfter = true;
        },
      });
      expect(ranAfter).toBe(true);
      expect(lines).toContainEqual(
        expect.objectContaining({ level: 'warn', msg: expect.stringMatching(/newer than this release/), newer: ['0002_second'] }),
      );
      const { rows } = await sql<{ name: string }>`select name from rollback_migration order by name`.execute(db);
      expect(rows.map((row) => row.name)).toEqual(['0001_first', '0002_second']);

      // A release behind by a migration it has not applied is still migrated.
      const first = { '0001_first': createTable('behind_first') };
      await migrateToLatest(db, { owner: 'behind', migrations: first, logger: quiet });
      await migrateToLatest(db, { owner: 'behind', migrations: { ...first, '0002_other': createTable('behind_other') }, logger: quiet });
      const { rows: behind } = await sql<{ name: string }>`select name from behind_migration order by name`.execute(db);
      expect(behind.map((row) => row.name)).toEqual(['0001_first', '0002_other']);
    } finally {
      await destroy();
    }
  });

  it('still fails on a migration that runs the server out of disk, which trying again would only repeat', async () => {
    const quiet = createLogger({ name: 'migrate-test', level: 'silent' });
    const { db, destroy } = createDb<unknown>({ url: database.url, applicationName: 'db-migrate-test' });
    try {
      const diskFull: Migration = {
        async up() {
          // What an index too large to sort on the server's disk raises, every time.
          throw Object.assign(new Error('could not extend file: No space left on device'), { code: '53100' });
        },
      };
      const failure = await migrateToLatest(db, { owner: 'diskfull', migrations: { '0001_index': diskFull }, logger: quiet }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failure).toMatchObject({ message: 'migrations of diskfull failed' });
      expect(isDatabaseUnavailable(failure)).toBe(false);
    } finally {
      await destroy();
    }
  });

  it('waits for another process migrating longer than its pool lets one statement run', async () => {
    const quiet = createLogger({ name: 'migrate-test', level: 'silent' });
    const holder = createDb<unknown>({ url: database.url, applicationName: 'db-migrate-test' });
    // A service's own pool: its statements time out after 1 s here (10 or 30 s in the services).
    const service = createDb<unknown>({ url: database.url, applicationName: 'db-migrate-test', queryTimeoutMs: 1_000 });
    try {
      await holder.db.connection().execute(async (conn) => {
        await sql`select pg_advisory_lock(hashtext('switchboard:migrate:waiting'))`.execute(conn);
        const migrating = migrateToLatest(service.db, {
          owner: 'waiting',
          migrations: { '0001_first': createTable('waiting_first') },
          logger: quiet,
        });
        migrating.catch(() => undefined);
        let settled = false;
        void migrating.finally(() => {
          settled = true;
        });
        await new Promise((resolve) => setTimeout(resolve, 2_500));
        // It waited for the lock rather than migrating beside its holder.
        expect(settled).toBe(false);
        const { rows: none } = await sql<{ exists: boolean }>`select to_regclass('waiting_migration') is not null as exists`.execute(conn);
        expect(none[0]?.exists).toBe(false);
        await sql`select pg_advisory_unlock(hashtext('switchboard:migrate:waiting'))`.execute(conn);
        // Before, one blocking statement for the whole wait, which the pool's timeout ended.
        await migrating;
      });
      const { rows } = await sql<{ name: string }>`select name from waiting_migration`.execute(service.db);
      expect(rows.map((row) => row.name)).toEqual(['0001_first']);
    } finally {
      await service.destroy();
      await holder.destroy();
    }
  });

  it('gives up waiting for another process migrating when its start is aborted', async () => {
    const quiet = createLogger({ name: 'migrate-test', level: 'silent' });
    const holder = createDb<unknown>({ url: database.url, applicationName: 'db-migrate-test' });
    const service = createDb<unknown>({ url: database.url, applicationName: 'db-migrate-test' });
    try {
      await holder.db.connection().execute(async (conn) => {
        await sql`select pg_advisory_lock(hashtext('switchboard:migrate:aborted'))`.execute(conn);
        const stopping = new AbortController();
        const migrating = migrateToLatest(service.db, {
          owner: 'aborted',
          migrations: { '0001_first': createTable('aborted_first') },
          logger: quiet,
          signal: stopping.signal,
        });
        migrating.catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 600));
        const reason = new Error('SIGTERM while starting');
        stopping.abort(reason);
        // Before, the wait went on while the lock was held, whatever the signal said.
        const stillWaiting = new Promise((resolve) => setTimeout(resolve, 5_000, 'still waiting'));
        await expect(Promise.race([migrating, stillWaiting])).rejects.toBe(reason);
        const { rows } = await sql<{ exists: boolean }>`select to_regclass('aborted_migration') is not null as exists`.execute(conn);
        expect(rows[0]?.exists).toBe(false);
        await sql`select pg_advisory_unlock(hashtext('switchboard:migrate:aborted'))`.execute(conn);
      });
      // The lock was never taken by the aborted start, and nothing of it is left to wait for.
      await migrateToLatest(service.db, { owner: 'aborted', migrations: { '0001_first': createTable('aborted_first') }, logger: quiet });
    } finally {
      await service.destroy();
      await holder.destroy();
    }
  });

  it('throws a database that cannot take a migration now as unavailable, to be waited for, not as a failed migration', async () => {
    const quiet = createLogger({ name: 'migrate-test', level: 'silent' });
    const first = { '0001_first': createTable('readonly_first') };
    const admin = createDb<unknown>({ url: database.url, applicationName: 'db-migrate-test' });
    try {
      await migrateToLatest(admin.db, { owner: 'readonly', migrations: first, logger: quiet });
      // A primary demoted in a failover: new sessions are read-only.
      await sql.raw(`alter database ${database.name} set default_transaction_read_only = on`).execute(admin.db);
      const replica = createDb<unknown>({ url: database.url, applicationName: 'db-migrate-test' });
      try {
        const failure = await migrateToLatest(replica.db, {
          owner: 'readonly',
          migrations: { ...first, '0002_second': createTable('readonly_second') },
          logger: quiet,
        }).then(
          () => undefined,
          (error: unknown) => error,
        );
        // Before, "migrations of readonly failed", which openWhenReachable took for a fatal error.
        expect(failure).toBeDefined();
        expect(isDatabaseUnavailable(failure)).toBe(true);
      } finally {
        await replica.destroy();
      }
    } finally {
      await sql.raw(`alter database ${database.name} reset default_transaction_read_only`).execute(admin.db);
      await admin.destroy();
    }
  });
});
