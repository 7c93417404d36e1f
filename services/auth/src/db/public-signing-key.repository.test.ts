import { createDb, type Database, migrateToLatest } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createTestDatabase, type TestDatabase } from '@switchboard/testing';
import type { JWK } from 'jose';
import { type Kysely, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrations } from '../migrations/index.js';
import { listPublishedKeys, recordSigningKeyUse } from './public-signing-key.repository.js';
import type { AuthDatabase } from './schema.js';

// Against the real PostgreSQL: the horizon is kept by its clock, for every replica alike.
let testDatabase: TestDatabase;
let database: Database<AuthDatabase>;
let db: Kysely<AuthDatabase>;

beforeAll(async () => {
  testDatabase = await createTestDatabase('public_signing_keys');
  database = createDb<AuthDatabase>({ url: testDatabase.url, applicationName: 'public-signing-keys-test' });
  db = database.db;
  await migrateToLatest(db as Kysely<unknown>, { owner: 'auth', migrations, logger: createLogger({ name: 'test', level: 'silent' }) });
});

afterAll(async () => {
  await database?.destroy();
  await testDatabase?.drop();
});

const HOUR_MS = 3_600_000;
const jwk = (kid: string): JWK => ({ kty: 'OKP', crv: 'Ed25519', x: `x-${kid}`, kid, alg: 'EdDSA', use: 'sig' });
const record = (kid: string, publishForMs: number) => recordSigningKeyUse(db, { kid, alg: 'EdDSA', publicJwk: jwk(kid), publishForMs });

/** Hours from now to the key's horizon, and whether its first record stayed put. */
async function rowOf(kid: string) {
  return db
    .selectFrom('public_signing_keys')
    .select([
      sql<number>`extract(epoch from publish_until - now())::float8 / 3600`.as('hoursLeft'),
      'first_signed_at',
      'last_signed_at',
      'public_jwk',
    ])
    .where('kid', '=', kid)
    .executeTakeFirstOrThrow();
}

describe('public signing keys', () => {
  it('stores the public JWK as given and answers how long ago the key was first recorded', async () => {
    const { recordedForMs } = await record('k-first', 2 * HOUR_MS);
    expect(recordedForMs).toBeGreaterThanOrEqual(0);
    expect(recordedForMs).toBeLessThan(1_000);
    const row = await rowOf('k-first');
    expect(row.public_jwk).toEqual(jwk('k-first'));
    expect(row.hoursLeft).toBeCloseTo(2, 2);

    await new Promise((resolve) => setTimeout(resolve, 50));
    const again = await record('k-first', 2 * HOUR_MS);
    expect(again.recordedForMs).toBeGreaterThanOrEqual(50);
    const after = await rowOf('k-first');
    expect(after.first_signed_at).toEqual(row.first_signed_at);
    expect(after.last_signed_at.getTime()).toBeGreaterThan(row.last_signed_at.getTime());
  });

  it('moves the horizon forward, never back: the longest-lived tokens win', async () => {
    await record('k-long', 30 * 24 * HOUR_MS);
    await record('k-long', 2 * HOUR_MS);
    expect((await rowOf('k-long')).hoursLeft).toBeCloseTo(30 * 24, 1);
  });

  it('counts a key whose publication had lapsed as new when it is recorded again (a rollback to it)', async () => {
    await record('k-lapsed', -1_000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await record('k-lapsed', HOUR_MS)).recordedForMs).toBe(0);
    expect((await rowOf('k-lapsed')).hoursLeft).toBeCloseTo(1, 2);
  });

  it('lists the keys within their horizon, most recently used first', async () => {
    await record('k-gone', -1_000);
    await record('k-older', HOUR_MS);
    await record('k-newer', HOUR_MS);
    const listed = (await listPublishedKeys(db)).map((key) => key.kid);
    expect(listed).not.toContain('k-gone');
    expect(listed.indexOf('k-newer')).toBeLessThan(listed.indexOf('k-older'));
    expect(listed.indexOf('k-newer')).toBeGreaterThanOrEqual(0);
  });
});
