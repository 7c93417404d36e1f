import type { Kysely } from 'kysely';
import type { AuthDatabase } from './schema.js';
import type { NewSigningKeyRow, SigningKeyRow } from './signing-key.table.js';

/** Newest first: the first is the one that signs. */
export async function listSigningKeys(db: Kysely<AuthDatabase>): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_keys').selectAll().orderBy('created_at', 'desc').orderBy('kid').execute();
}

export async function insertSigningKey(db: Kysely<AuthDatabase>, key: NewSigningKeyRow): Promise<void> {
  await db
    .insertInto('signing_keys')
    .values(key)
    .onConflict((oc) => oc.column('kid').doNothing())
    .execute();
}
