import type { Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
export async function up(db: Kysely<any>): Promise<void> {
  // Raised when an admin disables an account or changes its role or password: tokens carry the
  // version they were issued at (`tv`), and one below the account's is revoked.
  await db.schema
    .alterTable('users')
    .addColumn('token_version', 'integer', (column) => column.notNull().defaultTo(0))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('token_version').execute();
}
