import { type Kysely, sql } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('sessions')
    .addColumn('id', 'bigint', (col) => col.generatedAlwaysAsIdentity().primaryKey())
    .addColumn('customer_id', 'bigint', (col) => col.notNull())
    .addColumn('subject', 'text')
    .addColumn('status', 'text', (col) => col.notNull().defaultTo('open').check(sql`status in ('open', 'closed')`))
    .addColumn('last_seq', 'bigint', (col) => col.notNull().defaultTo(0))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('sessions_customer_id_idx').on('sessions').column('customer_id').execute();
  await db.schema.createIndex('sessions_status_created_at_idx').on('sessions').columns(['status', 'created_at']).execute();

  await db.schema
    .createTable('messages')
    .addColumn('id', 'bigint', (col) => col.generatedAlwaysAsIdentity().primaryKey())
    .addColumn('session_id', 'bigint', (col) => col.notNull().references('sessions.id'))
    .addColumn('seq', 'bigint', (col) => col.notNull())
    .addColumn('sender_id', 'bigint', (col) => col.notNull())
    .addColumn('sender_role', 'text', (col) => col.notNull())
    .addColumn('content', 'text', (col) => col.notNull())
    .addColumn('client_msg_id', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('messages_session_seq_key', ['session_id', 'seq'])
    .addUniqueConstraint('messages_session_client_msg_id_key', ['session_id', 'client_msg_id'])
    .execute();

  await db.schema
    .createTable('dead_letters')
    .addColumn('id', 'bigint', (col) => col.generatedAlwaysAsIdentity().primaryKey())
    .addColumn('session_id', 'bigint')
    .addColumn('client_msg_id', 'text')
    .addColumn('reason', 'text', (col) => col.notNull())
    .addColumn('payload', 'text', (col) => col.notNull())
    .addColumn('stream_seq', 'bigint', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('dead_letters').execute();
  await db.schema.dropTable('messages').execute();
  await db.schema.dropTable('sessions').execute();
}
