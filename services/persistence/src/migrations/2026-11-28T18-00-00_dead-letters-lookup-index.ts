import type { Kysely } from 'kysely';
import { DROP_TRIES, withLockTries } from './lock-tries.js';

/**
 * `messages.lookup` asks whether the message it cannot find was set aside: by session,
 * `client_msg_id` and stream sequence, on a table that had no index but its id. `dead_letters`
 * holds only the messages that could not be stored, so the build inside the migration's
 * transaction is short; dead letters written meanwhile wait for it.
 *
 * Its lock is asked for in a few tries of 2 s, and the migration fails after them, to be run
 * again by the next start or hook: behind a transaction left open on the table, a request that
 * waited for good held every dead letter back, and, upgrading from a release before the index
 * migrations of `sessions` (which take that table first, in the same transaction), all storage.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await withLockTries(db, DROP_TRIES, async () => {
    await db.schema
      .createIndex('dead_letters_session_client_msg_id_idx')
      .on('dead_letters')
      .columns(['session_id', 'client_msg_id'])
      .execute();
  });
}

export async function down(db: Kysely<any>): Promise<void> {
  await withLockTries(db, DROP_TRIES, async () => {
    await db.schema.dropIndex('dead_letters_session_client_msg_id_idx').execute();
  });
}
