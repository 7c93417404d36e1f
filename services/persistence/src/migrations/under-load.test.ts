import { createDb, type Database } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createTestDatabase, query, type TestDatabase, waitFor } from '@switchboard/testing';
import { Migrator, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratePersistence } from '../app.js';
import { PERSISTENCE_CONNECTION_SETTINGS } from '../db/connection-settings.js';
import type { PersistenceDatabase } from '../db/schema.js';
import { storeBatch } from '../inbound/store-batch.js';
import { migrations } from './index.js';

/**
 * An upgrade from the first release's schema while messages are stored: the index migrations
 * build and drop indexes of `sessions` in one transaction, and a batch storing a message locks
 * and updates a session's row meanwhile.
 */

/** Enough that building an index of `sessions` takes a while, so that a batch can arrive during it. */
const SESSIONS = 1_000_000;
const FIRST = '2026-11-25T01-00-00_sessions-and-messages';

let database: TestDatabase;
let migrating: Database<PersistenceDatabase>;
/** As persistence stores messages (main.ts), on a connection of its own. */
let storing: Database<PersistenceDatabase>;

beforeAll(async () => {
  database = await createTestDatabase('migrate_under_load');
  migrating = createDb({ url: database.url, poolSize: 1, applicationName: 'migrate-under-load' });
  storing = createDb({
    url: database.url,
    poolSize: 1,
    applicationName: 'store-under-migration',
    settings: PERSISTENCE_CONNECTION_SETTINGS,
  });
  const firstRelease = new Migrator({
    db: migrating.db,
    provider: { getMigrations: async () => ({ [FIRST]: migrations[FIRST] ?? { up: async () => undefined } }) },
    migrationTableName: 'persistence_migration',
    migrationLockTableName: 'persistence_migration_lock',
  });
  const { error } = await firstRelease.migrateToLatest();
  if (error) throw error;
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
    const indexes = await query<{ indexname: string }>(
      database.url,
      `select indexname from pg_indexes where tablename = 'sessions' order by 1`,
    );
    expect(indexes.map((row) => row.indexname)).toEqual([
      'sessions_created_at_id_idx',
      'sessions_customer_newest_idx',
      'sessions_pkey',
      'sessions_status_newest_idx',
    ]);
  }, 120_000);
});
