import { type Kysely, sql } from 'kysely';

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
  await db.schema.dropIndex('sessions_created_at_id_idx').execute();
}

/**
 * Takes `sessions` in EXCLUSIVE mode, which lets reads through and holds every write back at its
 * first lock, before a migration builds or drops an index of it. Without it, a batch storing
 * messages during a build took its row locks' table lock (`for update`, which a build allows) and
 * then waited for the one its `update` needs; a later `drop index` in the same transaction waited
 * for the batch, and PostgreSQL ended one of them as a deadlock: the migration, failing the
 * upgrade's hook at every try while messages were sent, or the batch. The migrations pending run
 * in one transaction, so the first of them that touches the table's indexes takes the lock for all.
 */
export async function lockSessionsForIndexes(db: Kysely<any>): Promise<void> {
  await sql`lock table sessions in exclusive mode`.execute(db);
}
