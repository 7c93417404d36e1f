import type { ColumnType, Insertable, Selectable } from 'kysely';

export interface SigningKeyTable {
  kid: string;
  alg: string;
  /** PKCS#8 PEM. Generated at first start when JWT_PRIVATE_KEY is not set. */
  private_key_pem: string;
  created_at: ColumnType<Date, never, never>;
}

export type SigningKeyRow = Selectable<SigningKeyTable>;
export type NewSigningKeyRow = Insertable<SigningKeyTable>;
