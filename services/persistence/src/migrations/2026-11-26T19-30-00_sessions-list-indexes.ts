import type { Kysely } from 'kysely';
import { DROP_TRIES, lockSessionsForIndexes, withLockTries } from './lock-tries.js';

/**
 * Every session list, and the count of a customer's new sessions, reads an index in its own order
 * and stops after the rows it needs:
 *
 * - a customer's sessions, newest first (`list_sessions` by a customer, and the count behind
 *   SESSION_CREATE_LIMIT): `(customer_id, created_at desc, id desc)`, which also serves every
 *   lookup the index on `customer_id` alone did, and replaces it. Before, each list read all of
 *   the customer's sessions and sorted them.
 * - by status, newest first (an agent's open or closed sessions): `(status, created_at desc,
 *   id desc)`, replacing `(status, created_at)`. Persistence plans each statement once for any
 *   value (`force_generic_plan`), and such a plan, not knowing which status it looks for, could
 *   walk the newest-first index of all sessions and filter it: when every session is open, a list
 *   of closed ones read the whole table to find none.
 *
 * Built inside the migration's transaction (see sessions-newest-first-index): writes to `sessions`
 * wait for the build, at the table's lock taken first; reads do not.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await lockSessionsForIndexes(db);
  await db.schema
    .createIndex('sessions_customer_newest_idx')
    .on('sessions')
    .columns(['customer_id', 'created_at desc', 'id desc'])
    .execute();
  await db.schema.createIndex('sessions_status_newest_idx').on('sessions').columns(['status', 'created_at desc', 'id desc']).execute();
  // A drop takes the whole table, reads included: it waits for those in flight, in a few tries.
  await withLockTries(db, DROP_TRIES, async () => {
    await db.schema.dropIndex('sessions_customer_id_idx').execute();
    await db.schema.dropIndex('sessions_status_created_at_idx').execute();
  });
}

export async function down(db: Kysely<any>): Promise<void> {
  await lockSessionsForIndexes(db);
  await db.schema.createIndex('sessions_customer_id_idx').on('sessions').column('customer_id').execute();
  await db.schema.createIndex('sessions_status_created_at_idx').on('sessions').columns(['status', 'created_at']).execute();
  await withLockTries(db, DROP_TRIES, async () => {
    await db.schema.dropIndex('sessions_customer_newest_idx').execute();
    await db.schema.dropIndex('sessions_status_newest_idx').execute();
  });
}
