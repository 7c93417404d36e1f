import type { Migration } from 'kysely';
import * as usersAndKeys from './2026-11-25T00-00-00_users-and-keys.js';
import * as loginFailures from './2026-11-26T00-00-00_login-failures.js';
import * as publicSigningKeys from './2026-11-26T18-00-00_public-signing-keys.js';
import * as usernamesLoweredInC from './2026-11-28T16-00-00_usernames-lowered-in-c.js';
import * as usersDisabled from './2026-11-28T16-30-00_users-disabled.js';
import * as usersTokenVersion from './2026-11-28T20-40-00_users-token-version.js';

/** Every migration of the auth service, by name; names sort in the order they apply. */
export const migrations: Record<string, Migration> = {
  '2026-11-25T00-00-00_users-and-keys': usersAndKeys,
  '2026-11-26T00-00-00_login-failures': loginFailures,
  '2026-11-26T18-00-00_public-signing-keys': publicSigningKeys,
  '2026-11-28T16-00-00_usernames-lowered-in-c': usernamesLoweredInC,
  '2026-11-28T16-30-00_users-disabled': usersDisabled,
  '2026-11-28T20-40-00_users-token-version': usersTokenVersion,
};
