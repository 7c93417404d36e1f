import type { Role } from '@switchboard/protocol';
import type { Kysely } from 'kysely';
import type { AuthDatabase } from './db/schema.js';
import { findUserByUsername } from './db/user.repository.js';
import { verifyPassword } from './passwords.js';

/**
 * Whether an account of that name exists, its role, and whether the password opens it, read from
 * the database rather than tried as a login: for the all-in-one process's demo agent, checked at
 * every start, where a failed login would count against the address and the name.
 */
export async function checkAccount(
  db: Kysely<AuthDatabase>,
  credentials: { username: string; password: string },
): Promise<{ role: Role; passwordMatches: boolean; disabled: boolean } | undefined> {
  const user = await findUserByUsername(db, credentials.username);
  if (!user) return undefined;
  return {
    role: user.role,
    passwordMatches: await verifyPassword(user.password_hash, credentials.password),
    // An admin disabled it (PATCH /v1/users/:id): it logs in no more, whatever its password.
    disabled: user.disabled_at !== null,
  };
}
