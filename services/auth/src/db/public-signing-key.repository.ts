import type { JWK } from 'jose';
import { type Kysely, sql } from 'kysely';
import type { AuthDatabase } from './schema.js';

export interface SigningKeyUse {
  kid: string;
  alg: string;
  publicJwk: JWK;
  /** How long from now the key must stay published: past the expiry of the tokens it signs until the next record. */
  publishForMs: number;
}

/**
 * Records that a key signs now: stores its public key the first time, and moves its last use and
 * its publication horizon forward, never back (another replica may issue longer-lived tokens with
 * it). Answers how long the key has been published without a break, by the database's clock.
 */
export async function recordSigningKeyUse(db: Kysely<AuthDatabase>, use: SigningKeyUse): Promise<{ recordedForMs: number }> {
  const publishUntil = sql<string>`now() + make_interval(secs => ${use.publishForMs / 1000})`;
  return db
    .insertInto('public_signing_keys')
    .values({ kid: use.kid, alg: use.alg, public_jwk: JSON.stringify(use.publicJwk), publish_until: publishUntil })
    .onConflict((oc) =>
      oc.column('kid').doUpdateSet((eb) => ({
        // A key whose publication had lapsed is new again to every replica's JWKS: counted from
        // now, so that it waits before signing as a new key does (a rollback to an old key).
        first_signed_at: sql<string>`case when ${eb.ref('public_signing_keys.publish_until')} <= now() then now() else public_signing_keys.first_signed_at end`,
        last_signed_at: sql<string>`now()`,
        publish_until: sql<string>`greatest(${eb.ref('public_signing_keys.publish_until')}, ${eb.ref('excluded.publish_until')})`,
      })),
    )
    .returning(sql<number>`(extract(epoch from now() - first_signed_at) * 1000)::float8`.as('recordedForMs'))
    .executeTakeFirstOrThrow();
}

/** The public keys still to publish, most recently used first. */
export async function listPublishedKeys(db: Kysely<AuthDatabase>): Promise<JWK[]> {
  const rows = await db
    .selectFrom('public_signing_keys')
    .select('public_jwk')
    .where('publish_until', '>', sql<Date>`now()`)
    .orderBy('last_signed_at', 'desc')
    .orderBy('kid')
    .execute();
  return rows.map((row) => row.public_jwk);
}
