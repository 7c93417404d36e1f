import { type Kysely, sql } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
export async function up(db: Kysely<any>): Promise<void> {
  // The public half of every key that has signed tokens, JWT_PRIVATE_KEY's included, so that each
  // replica publishes the keys the others sign with, and a replaced key until its tokens expire.
  await db.schema
    .createTable('public_signing_keys')
    .addColumn('kid', 'text', (col) => col.primaryKey())
    .addColumn('alg', 'text', (col) => col.notNull())
    .addColumn('public_jwk', 'jsonb', (col) => col.notNull())
    .addColumn('first_signed_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('last_signed_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('publish_until', 'timestamptz', (col) => col.notNull())
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('public_signing_keys').execute();
}
