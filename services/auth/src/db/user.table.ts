import type { Role } from '@switchboard/protocol';
import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';

export interface UserTable {
  id: Generated<number>;
  username: string;
  /** Null for users created through `/v1/service-token`, who never log in with a password. */
  password_hash: string | null;
  role: Role;
  display_name: string | null;
  /** The calling backend's own id for users minted through `/v1/service-token`. */
  external_id: string | null;
  created_at: ColumnType<Date, never, never>;
  /** When an admin disabled the account (PATCH /v1/users/:id): it no longer logs in or gets tokens. */
  disabled_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  /**
   * Raised when the account is disabled, or its role or password changes: its tokens carry the
   * version they were issued at (`tv`), and one below this is revoked.
   */
  token_version: ColumnType<number, never, number>;
}

export type UserRow = Selectable<UserTable>;
export type NewUserRow = Insertable<UserTable>;
