import { type Kysely, sql } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
export async function up(db: Kysely<any>): Promise<void> {
  // lower() follows the database's collation: under a Turkish one (tr_TR, ICU's tr) it makes
  // 'I' a dotless 'ı', where the service, in JavaScript, makes 'i'. Looked up by the service's
  // lower case, "Ivan" could never log in, and "ivan" could sign up beside him. Usernames are
  // ASCII: under "C", lower() changes A to Z alone, as the service does, whatever the locale.
  // On such a database already holding two names that differ only in case, this fails (23505):
  // rename one of them first (docs/operations.md, Upgrade).
  await db.schema
    .createIndex('users_username_c_lower_key')
    .on('users')
    .unique()
    .expression(sql`lower(username collate "C")`)
    .where(sql.ref('external_id'), 'is', null)
    .execute();
  // users_username_lower_key stays for a release: the previous release's replicas, running until
  // the rollout ends (or again after a rollback), look names up through it.
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('users_username_c_lower_key').execute();
}
