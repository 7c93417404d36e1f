import { errorCode } from '@switchboard/db';
import type { Role } from '@switchboard/protocol';
import { type Kysely, sql } from 'kysely';
import type { AuthDatabase } from './schema.js';
import type { UserRow } from './user.table.js';

const UNIQUE_VIOLATION = '23505';

export class UsernameTakenError extends Error {
  override name = 'UsernameTakenError';
}

export async function findUserByUsername(db: Kysely<AuthDatabase>, username: string): Promise<UserRow | undefined> {
  return (
    db
      .selectFrom('users')
      .selectAll()
      // In "C", as the unique index: the database's own collation may lower case otherwise (see the
      // migration 2026-11-28T16-00-00).
      .where(sql<string>`lower(username collate "C")`, '=', username.toLowerCase())
      .where('external_id', 'is', null)
      .executeTakeFirst()
  );
}

export async function findUserById(db: Kysely<AuthDatabase>, id: number): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

/** @throws UsernameTakenError when the name exists in any letter case. */
export async function insertUser(
  db: Kysely<AuthDatabase>,
  user: { username: string; passwordHash: string; role: Role; displayName: string | null },
): Promise<UserRow> {
  try {
    return await db
      .insertInto('users')
      .values({
        username: user.username,
        password_hash: user.passwordHash,
        role: user.role,
        display_name: user.displayName,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
  } catch (error) {
    if (errorCode(error) === UNIQUE_VIOLATION) {
      throw new UsernameTakenError(`username ${user.username} is taken`, { cause: error });
    }
    throw error;
  }
}

/**
 * Replaces a user's password hash, if the user still has the role given, and revokes its tokens:
 * answers the version they are valid from now, or undefined if nothing was replaced.
 */
export async function setPasswordHash(db: Kysely<AuthDatabase>, id: number, role: Role, passwordHash: string): Promise<number | undefined> {
  const row = await db
    .updateTable('users')
    .set({ password_hash: passwordHash, token_version: sql<number>`token_version + 1` })
    .where('id', '=', id)
    .where('role', '=', role)
    .returning('token_version')
    .executeTakeFirst();
  return row?.token_version;
}

/** What an admin may change of an account; fields left out stay as they are. */
export interface UserChanges {
  passwordHash?: string;
  role?: Role;
  displayName?: string;
  disabled?: boolean;
}

/** Applies `changes` to the user; undefined when there is none of that id. */
export async function updateUser(db: Kysely<AuthDatabase>, id: number, changes: UserChanges): Promise<UserRow | undefined> {
  // Disabling, a new password or another role than the row's revokes the tokens issued before:
  // decided against the row as it is when written (under the lock of updateUserAsAdmin), so two
  // admins changing a role at once cannot both take the change for none.
  const revokes =
    changes.disabled === true || changes.passwordHash !== undefined
      ? sql<boolean>`true`
      : changes.role !== undefined
        ? sql<boolean>`role <> ${changes.role}`
        : sql<boolean>`false`;
  return db
    .updateTable('users')
    .set((eb) => ({
      token_version: sql<number>`token_version + case when ${revokes} then 1 else 0 end`,
      ...(changes.passwordHash === undefined ? {} : { password_hash: changes.passwordHash }),
      ...(changes.role === undefined ? {} : { role: changes.role }),
      ...(changes.displayName === undefined ? {} : { display_name: changes.displayName }),
      // Disabling keeps the first time it was disabled; enabling clears it.
      ...(changes.disabled === undefined ? {} : { disabled_at: changes.disabled ? eb.fn.coalesce('disabled_at', sql<Date>`now()`) : null }),
    }))
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

/**
 * Applies `changes` to user `id` for the admin `adminId`, in a transaction that first locks both
 * rows (in id order): the admin must still be an enabled admin when the change is made. Two admins
 * disabling or demoting each other at once are so taken one after the other, and the second finds
 * itself no admin: since no admin changes their own row this way, this API leaves one enabled admin.
 * (A service admin's backend can still demote it through /v1/service-token: ADMIN_USERNAME is then
 * the way back in.)
 */
export async function updateUserAsAdmin(
  db: Kysely<AuthDatabase>,
  { adminId, id, changes }: { adminId: number; id: number; changes: UserChanges },
): Promise<{ outcome: 'updated'; user: UserRow; revoked: boolean } | { outcome: 'not_admin' } | { outcome: 'not_found' }> {
  // Read committed, whatever the database's default: a row another change locked is read again
  // once that change commits, rather than failing the transaction (40001) as a stricter level does.
  return db
    .transaction()
    .setIsolationLevel('read committed')
    .execute(async (trx) => {
      const locked = await trx
        .selectFrom('users')
        .select(['id', 'role', 'disabled_at', 'token_version'])
        .where('id', 'in', [adminId, id])
        .orderBy('id')
        .forUpdate()
        .execute();
      const admin = locked.find((row) => row.id === adminId);
      if (admin?.role !== 'admin' || admin.disabled_at !== null) return { outcome: 'not_admin' as const };
      const before = locked.find((row) => row.id === id);
      const user = before ? await updateUser(trx, id, changes) : undefined;
      // `revoked`: the change raised the token version (see updateUser), read under the same lock.
      return user && before
        ? { outcome: 'updated' as const, user, revoked: user.token_version > before.token_version }
        : { outcome: 'not_found' as const };
    });
}

/**
 * Finds the user linked to a calling backend's `externalId`, creating it on first use, in one
 * statement so that concurrent first calls agree. The backend is authoritative for role and
 * display name, so later calls update them; another role revokes the user's tokens, as through
 * the API. `revoked`: this call raised the token version (or another change did meanwhile,
 * which announcing again does no harm).
 */
export async function upsertExternalUser(
  db: Kysely<AuthDatabase>,
  user: { externalId: string; role: Role; displayName: string | undefined },
): Promise<{ user: UserRow; revoked: boolean }> {
  // `before` reads the row as the statement found it: the version the update raises, if any.
  const { previous_token_version: previous, ...row } = await db
    .with('before', (qb) => qb.selectFrom('users').select('token_version').where('external_id', '=', user.externalId))
    .insertInto('users')
    .values({
      username: `ext:${user.externalId}`,
      password_hash: null,
      role: user.role,
      display_name: user.displayName ?? null,
      external_id: user.externalId,
    })
    .onConflict((oc) =>
      oc.column('external_id').doUpdateSet((eb) => ({
        role: eb.ref('excluded.role'),
        display_name: eb.fn.coalesce('excluded.display_name', 'users.display_name'),
        // Set from the row as it was: `users.role` is the old role here.
        token_version: sql<number>`users.token_version + case when users.role <> excluded.role then 1 else 0 end`,
      })),
    )
    .returningAll()
    .returning(sql<number | null>`(select token_version from before)`.as('previous_token_version'))
    .executeTakeFirstOrThrow();
  return { user: row, revoked: previous !== null && row.token_version > previous };
}
