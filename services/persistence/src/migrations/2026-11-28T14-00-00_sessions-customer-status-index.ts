import type { Kysely } from 'kysely';
import { lockSessionsForIndexes } from './lock-tries.js';

/**
 * A customer's sessions of one status, newest first (`list_sessions` by a customer with a
 * `status`): `(customer_id, status, created_at desc, id desc)`. Before, such a list read the
 * customer's index and threw away the sessions of the other status, or the status's index and threw
 * away other customers': a customer with a long history asking for the status it has none of read
 * every session it ever had, at each request, and a few such requests held every API turn.
 *
 * Built inside the migration's transaction (see sessions-newest-first-index): writes to `sessions`
 * wait for the build, at the table's lock taken first; reads do not.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await lockSessionsForIndexes(db);
  await db.schema
    .createIndex('sessions_customer_status_newest_idx')
    .on('sessions')
    .columns(['customer_id', 'status', 'created_at desc', 'id desc'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('sessions_customer_status_newest_idx').execute();
}
