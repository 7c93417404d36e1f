import { createDb, type Database } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createTestDatabase, query, type TestDatabase, waitFor } from '@switchboard/testing';
import { type Kysely, Migrator, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratePersistence } from '../app.js';
import { PERSISTENCE_CONNECTION_SETTINGS } from '../db/connection-settings.js';
import type { PersistenceDatabase } from '../db/schema.js';
import { storeBatch } from '../inbound/store-batch.js';
import { migrations } from './index.js';

/**
 * Upgrades from the first release's schema under load. While messages are stored: the index
 * migrations build and drop indexes of `sessions` in one transaction, and a batch storing a
 * message locks and updates a session's row meanwhile. Behind a transaction left open on
 * `sessions`: see the second describe.
 */

/** Enough that building an index of `sessions` takes a while, so that a batch can arrive during it. */
const SESSIONS = 1_000_000;
const FIRST = '2026-11-25T01-00-00_sessions-and-messages';
/** How long the transaction on `sessions` stays open at most: longer than any try for its lock. */
const HELD_MS = 8_000;

let database: TestDatabase;
let migrating: Database<PersistenceDatabase>;
/** As persistence stores messages (main.ts), on a connection of its own. */
let storing: Database<PersistenceDatabase>;

/** Applies the first release's migration only. */
async function migrateToFirstRelease(db: Kysely<PersistenceDatabase>): Promise<void> {
  const firstRelease = new Migrator({
    db,
    provider: { getMigrations: async () => ({ [FIRST]: migrations[FIRST] ?? { up: async () => undefined } }) },
    migrationTableName: 'persistence_migration',
    migrationLockTableName: 'persistence_migration_lock',
  });
  const { error } = await firstRelease.migrateToLatest();
  if (error) throw error;
}

/**
 * For one describe: a database of its own at the first release's schema, made before its tests
 * and dropped after them, with a connection named `applicationName` to migrate it on (`db`).
 */
function atFirstRelease(label: string, applicationName: string) {
  let database: TestDatabase | undefined;
  let migrating: Database<PersistenceDatabase> | undefined;
  beforeAll(async () => {
    database = await createTestDatabase(label);
    migrating = createDb({ url: database.url, poolSize: 1, applicationName });
    await migrateToFirstRelease(migrating.db);
  }, 60_000);
  afterAll(async () => {
    await migrating?.destroy();
    await database?.drop();
  });
  const made = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error(`the database ${label} was not made`);
    return value;
  };
  return {
    get url() {
      return made(database).url;
    },
    get db() {
      return made(migrating).db;
    },
  };
}

/** The names of a table's indexes, in order. */
async function indexesOf(url: string, table: string): Promise<string[]> {
  const rows = await query<{ indexname: string }>(url, 'select indexname from pg_indexes where tablename = $1 order by 1', [table]);
  return rows.map((row) => row.indexname);
}

/** Runs `during` while another connection holds a transaction open after `statement`; ends that transaction after. */
async function whileLeftOpen(url: string, statement: string, during: () => Promise<void>): Promise<void> {
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  try {
    await holder.query('begin');
    await holder.query(statement);
    await during();
  } finally {
    await holder.query('rollback').catch(() => undefined);
    await holder.end();
  }
}

/** Runs the pending migrations, which must give up after their tries for a lock (55P03) within 40 s, not wait for good. */
async function expectMigrationsToGiveUp(db: Kysely<PersistenceDatabase>, logger: ReturnType<typeof createLogger>): Promise<void> {
  const migration = migratePersistence(db, logger).then(
    () => 'migrated' as const,
    (error: unknown) => error,
  );
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<'still waiting'>((resolve) => {
    timer = setTimeout(() => resolve('still waiting'), 40_000);
  });
  const outcome = await Promise.race([migration, gaveUp]);
  clearTimeout(timer);
  expect(outcome).toBeInstanceOf(Error);
  expect((outcome as Error).cause).toMatchObject({ code: '55P03' });
}

/** The indexes of `sessions` once every migration has run. */
async function expectLatestSessionIndexes(url: string): Promise<void> {
  expect(await indexesOf(url, 'sessions')).toEqual([
    'sessions_created_at_id_idx',
    'sessions_customer_newest_idx',
    'sessions_customer_status_newest_idx',
    'sessions_pkey',
    'sessions_status_newest_idx',
  ]);
}

beforeAll(async () => {
  database = await createTestDatabase('migrate_under_load');
  migrating = createDb({ url: database.url, poolSize: 1, applicationName: 'migrate-under-load' });
  storing = createDb({
    url: database.url,
    poolSize: 1,
    applicationName: 'store-under-migration',
    settings: PERSISTENCE_CONNECTION_SETTINGS,
  });
  await migrateToFirstRelease(migrating.db);
  await sql`insert into sessions (customer_id) select g % 1000 from generate_series(1, ${SESSIONS}::int) g`.execute(migrating.db);
}, 120_000);

afterAll(async () => {
  await Promise.all([migrating?.destroy(), storing?.destroy()]);
  await database?.drop();
});

describe('the index migrations under load', () => {
  it('complete while a batch is stored during an index build, and the batch is stored after them', async () => {
    const migration = migratePersistence(migrating.db, createLogger({ name: 'migrate-under-load', level: 'silent' }));
    migration.catch(() => undefined);
    await waitFor(
      async () =>
        (
          await query(
            database.url,
            `select 1 from pg_stat_activity where application_name = 'migrate-under-load' and query ilike 'create index%' and state = 'active'`,
          )
        ).length > 0,
      30_000,
      'an index build to start',
    );
    const batch = storeBatch(storing.db, [
      {
        session_id: 1,
        client_msg_id: 'during-the-migration',
        sender_id: 1,
        sender_role: 'user',
        content: 'sent while the indexes are built',
        received_at: new Date().toISOString(),
      },
    ]);
    batch.catch(() => undefined);

    // Before, the drop of an old index waited for the batch, which waited for the build's lock:
    // PostgreSQL ended one of them as a deadlock (40P01), most often the migration.
    const [migrated, stored] = await Promise.allSettled([migration, batch]);
    expect(migrated).toEqual({ status: 'fulfilled', value: undefined });
    expect(stored).toMatchObject({ status: 'fulfilled', value: [{ kind: 'stored', message: { session_id: 1, seq: 1 } }] });
    await expectLatestSessionIndexes(database.url);
  }, 120_000);
});

/**
 * An upgrade from the first release's schema while a transaction holds `sessions` open: the index
 * migrations' request for the table's lock waited behind it for good, and every write to the table
 * after the request waited behind the request, so that one transaction left open stopped all
 * storage until it ended. The request now waits 2 s a try, and lets the writes through between tries.
 */
describe('the index migrations behind a transaction left open on sessions', () => {
  const blocked = atFirstRelease('migrate_lock_tries', 'migrate-lock-tries');

  it('let writes to sessions through while they wait, and complete once it ends', async () => {
    const holder = new pg.Client({ connectionString: blocked.url });
    const writer = new pg.Client({ connectionString: blocked.url, application_name: 'write-during-migration' });
    await Promise.all([holder.connect(), writer.connect()]);
    let migration: Promise<void> | undefined;
    try {
      // A session created in a transaction not yet ended: its lock lets other writes through,
      // but not the migrations' EXCLUSIVE one.
      await holder.query('begin');
      await holder.query('insert into sessions (customer_id) values (1)');
      migration = migratePersistence(blocked.db, createLogger({ name: 'migrate-lock-tries', level: 'silent' }));
      migration.catch(() => undefined);
      await waitFor(
        async () =>
          (
            await query(
              blocked.url,
              `select 1 from pg_stat_activity where application_name = 'migrate-lock-tries' and wait_event_type = 'Lock'`,
            )
          ).length > 0,
        30_000,
        'the migration to wait for the lock of sessions',
      );
      const written = writer.query('insert into sessions (customer_id) values (2)').then(() => 'written' as const);
      const held = new Promise<'still held'>((resolve) => setTimeout(() => resolve('still held'), HELD_MS));
      // Before: the write waited behind the migration, which waited for the transaction.
      expect(await Promise.race([written, held])).toBe('written');
      await holder.query('commit');
      await migration;
    } finally {
      await holder.query('rollback').catch(() => undefined);
      await Promise.all([holder.end(), writer.end()]);
      await migration?.catch(() => undefined);
    }
    await expectLatestSessionIndexes(blocked.url);
    expect(await query(blocked.url, 'select customer_id from sessions order by id')).toEqual([{ customer_id: '1' }, { customer_id: '2' }]);
  }, 60_000);
});

/**
 * An upgrade from the first release's schema while a transaction that wrote a dead letter is left
 * open: the index of `dead_letters` waits for it inside the transaction in which an earlier
 * migration took `sessions`, and a request for its lock that waited for good stopped all storage.
 * It now fails after its tries, and runs again once the transaction has ended.
 */
describe('the dead-letter index migration behind a transaction left open on dead_letters', () => {
  const blocked = atFirstRelease('migrate_dead_letter_tries', 'migrate-dead-letter-tries');

  it('fails after its tries, leaving the schema as it was and writes going, then completes once it ends', async () => {
    const logger = createLogger({ name: 'migrate-dead-letter-tries', level: 'silent' });
    const deadLetter = `insert into dead_letters (session_id, client_msg_id, reason, payload, stream_seq) values (1, 'k', 'test', '{}', 1)`;
    await whileLeftOpen(blocked.url, deadLetter, async () => {
      // Before: still waiting for the transaction, holding `sessions`, and every write with it.
      await expectMigrationsToGiveUp(blocked.db, logger);
      await query(blocked.url, 'insert into sessions (customer_id) values (1)');
      expect(await indexesOf(blocked.url, 'dead_letters')).toEqual(['dead_letters_pkey']);
    });
    await migratePersistence(blocked.db, logger);
    await expectLatestSessionIndexes(blocked.url);
    expect(await indexesOf(blocked.url, 'dead_letters')).toEqual(['dead_letters_pkey', 'dead_letters_session_client_msg_id_idx']);
  }, 90_000);
});

/**
 * An upgrade from the first release's schema while a read of `sessions` is left open (`begin;
 * select …` in psql, a long `pg_dump`): the builds do not wait for it, but the drop of the old
 * indexes does, while the migration holds every write back. It waited for good, and storage with
 * it; it now fails after a few tries, and runs again once the read has ended.
 */
describe('the index migrations behind a read left open on sessions', () => {
  const reading = atFirstRelease('migrate_drop_tries', 'migrate-drop-tries');

  it('fail after their tries, leaving the schema as it was and writes going, then complete once it ends', async () => {
    const logger = createLogger({ name: 'migrate-drop-tries', level: 'silent' });
    await whileLeftOpen(reading.url, 'select count(*) from sessions', async () => {
      // Before: still waiting for the read, and every write with it.
      await expectMigrationsToGiveUp(reading.db, logger);
      await query(reading.url, 'insert into sessions (customer_id) values (1)');
      expect(await indexesOf(reading.url, 'sessions')).toEqual([
        'sessions_customer_id_idx',
        'sessions_pkey',
        'sessions_status_created_at_idx',
      ]);
    });
    await migratePersistence(reading.db, logger);
    await expectLatestSessionIndexes(reading.url);
  }, 90_000);
});
