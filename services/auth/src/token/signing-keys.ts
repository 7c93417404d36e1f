import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, exportPKCS8, generateKeyPair, type JWK } from 'jose';
import type { Kysely } from 'kysely';
import type { AuthDatabase } from '../db/schema.js';
import { insertSigningKey, listSigningKeys } from '../db/signing-key.repository.js';

export type SigningAlgorithm = 'EdDSA' | 'ES256';

export interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  privateKey: KeyObject;
}

/** Parses a PKCS#8 PEM, accepting only Ed25519 (EdDSA) and P-256 (ES256) keys. */
export async function signingKeyFromPem(pem: string): Promise<SigningKey> {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch (error) {
    throw new Error('JWT_PRIVATE_KEY is not a PKCS#8 PEM private key', { cause: error });
  }
  const alg = algorithmOf(privateKey);
  if (!alg) throw new Error('JWT_PRIVATE_KEY must be an Ed25519 (EdDSA) or P-256 (ES256) key');
  return { kid: await thumbprintOf(privateKey), alg, privateKey };
}

function algorithmOf(key: KeyObject): SigningAlgorithm | undefined {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  return undefined;
}

async function thumbprintOf(privateKey: KeyObject): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(createPublicKey(privateKey)));
}

/**
 * Makes sure the database holds a signing key, generating an Ed25519 one if it holds none. Runs
 * under the migration lock, so replicas starting together agree on one key.
 */
export async function ensureStoredSigningKey(db: Kysely<AuthDatabase>): Promise<void> {
  if ((await listSigningKeys(db)).length > 0) return;
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const pem = await exportPKCS8(privateKey);
  const key = await signingKeyFromPem(pem);
  await insertSigningKey(db, { kid: key.kid, alg: key.alg, private_key_pem: pem });
}

/** The keys read at start: the one that signs, and the stored (generated) ones, which stay published. */
export interface LoadedSigningKeys {
  active: SigningKey;
  stored: SigningKey[];
}

/**
 * The configured key signs when given; otherwise the newest stored key. Stored keys stay in the
 * JWKS so that tokens they signed keep verifying after a switch to a configured key.
 */
export async function loadSigningKeys(db: Kysely<AuthDatabase>, configuredPem: string | undefined): Promise<LoadedSigningKeys> {
  const stored = await Promise.all((await listSigningKeys(db)).map((row) => signingKeyFromPem(row.private_key_pem)));
  const configured = configuredPem === undefined ? undefined : await signingKeyFromPem(configuredPem);
  const active = configured ?? stored[0];
  if (!active) throw new Error('no signing key: none configured and none stored');
  return { active, stored };
}

/** The key's public half as the JWKS lists it. */
export async function publicJwkOf(key: SigningKey): Promise<JWK> {
  const { kty, crv, x, y } = await exportJWK(createPublicKey(key.privateKey));
  // Named fields only: nothing of the private key can reach the JWKS or the database.
  return { kty, crv, x, ...(y === undefined ? {} : { y }), kid: key.kid, alg: key.alg, use: 'sig' };
}
