import type { Kysely } from 'kysely';
import { DROP_TRIES, lockSessionsForIndexes, withLockTries } from './lock-tries.js';

/**
 * The session list without a filter (`order by created_at desc, id desc limit n`) matched no
 * index, so every such `list_sessions` read all of `sessions` and sorted it, on the pool that
 * also stores messages. With this index it reads its `n` rows and stops.
 *
 * Ordering by `id` alone would use the primary key, but is not the same order: `created_at` is
 * the inserting transaction's start, so two sessions created at once can take their ids the other
 * way round, and a row written with its own `created_at` falls anywhere.
 *
 * Built inside the migration's transaction, not concurrently (which cannot run in one): writes to
 * `sessions` wait for the build (0.4 s for a million sessions on a two-core test machine); reads
 * do not. They wait at the table's lock, taken first (see `lockSessionsForIndexes`).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await lockSessionsForIndexes(db);
  await db.schema.createIndex('sessions_created_at_id_idx').on('sessions').columns(['created_at desc', 'id desc']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await withLockTries(db, DROP_TRIES, async () => {
    await db.schema.dropIndex('sessions_created_at_id_idx').execute();
  });
}
