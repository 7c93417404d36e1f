import type { LoginFailureTable } from './login-failure.table.js';
import type { PublicSigningKeyTable } from './public-signing-key.table.js';
import type { SigningKeyTable } from './signing-key.table.js';
import type { UserTable } from './user.table.js';

export interface AuthDatabase {
  users: UserTable;
  signing_keys: SigningKeyTable;
  public_signing_keys: PublicSigningKeyTable;
  login_failures: LoginFailureTable;
}
