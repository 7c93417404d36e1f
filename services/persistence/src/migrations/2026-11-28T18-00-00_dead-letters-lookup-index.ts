import type { Kysely } from 'kysely';

/**
 * `messages.lookup` asks whether a message it cannot find was set aside: by session and
 * `client_msg_id`, on a table that had no index but its id. `dead_letters` holds only the
 * messages that could not be stored, so the build inside the migration's transaction is short;
 * dead letters written meanwhile wait for it.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createIndex('dead_letters_session_client_msg_id_idx')
    .on('dead_letters')
    .columns(['session_id', 'client_msg_id'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('dead_letters_session_client_msg_id_idx').execute();
}
