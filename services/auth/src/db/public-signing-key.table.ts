import type { JWK } from 'jose';
import type { ColumnType, Selectable } from 'kysely';

/**
 * The public key of every key that has signed tokens, recorded by the replica signing with it at
 * start and then hourly (token/key-use.ts). Never a private key: JWT_PRIVATE_KEY stays out of the
 * database.
 */
export interface PublicSigningKeyTable {
  /** The JWK thumbprint, as in the tokens' `kid`. */
  kid: string;
  alg: string;
  /** As published in the JWKS: `kty`, `crv`, `x` (and `y`), `kid`, `alg`, `use`. */
  public_jwk: ColumnType<JWK, string, string>;
  first_signed_at: ColumnType<Date, never, never>;
  /** No earlier than the last token signed, give or take the recording interval. */
  last_signed_at: ColumnType<Date, never, Date | string>;
  /** Published in the JWKS until then: past the expiry of every token the key may have signed. */
  publish_until: ColumnType<Date, Date | string, Date | string>;
}

export type PublicSigningKeyRow = Selectable<PublicSigningKeyTable>;
