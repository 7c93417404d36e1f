import { generateKeyPairSync } from 'node:crypto';
import { createSubjects } from '@switchboard/protocol';
import { type ServiceProcess, TEST_NATS_URL, waitFor } from '@switchboard/testing';
import { createTokenVerifier, requestKeySource, TokenErrorCode } from '@switchboard/tokens';
import { decodeProtectedHeader } from 'jose';
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authPerTest } from './auth-per-test.js';

/**
 * Changing JWT_PRIVATE_KEY, by a restart or a rolling update: the key replaced stays in every
 * replica's JWKS (over HTTP and NATS) until its tokens expire, and the new one is in every
 * replica's JWKS as soon as it signs.
 */
const ADMIN = { username: 'rotation-admin', password: 'correct horse battery staple' };
const K1 = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const K2 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

let nc: NatsConnection;
// Each test on a database and subject prefix of its own: its replicas meet nobody else's keys.
const auth = authPerTest('auth_rotation');

beforeAll(async () => {
  nc = await connect({ servers: TEST_NATS_URL });
});

afterAll(async () => {
  await nc?.close();
});

function startAuth(privateKeyPem: string, extra: Record<string, string> = {}): Promise<ServiceProcess> {
  return auth.start({ JWT_PRIVATE_KEY: privateKeyPem, ADMIN_USERNAME: ADMIN.username, ADMIN_PASSWORD: ADMIN.password, ...extra });
}

async function tokenFrom(service: ServiceProcess): Promise<string> {
  const response = await fetch(service.url('/v1/token'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(ADMIN),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { access_token: string }).access_token;
}

const kidOf = (token: string) => decodeProtectedHeader(token).kid;
const kidsOf = (jwks: unknown) => (jwks as { keys: { kid: string }[] }).keys.map((key) => key.kid);

async function kidsOverHttp(service: ServiceProcess): Promise<string[]> {
  return kidsOf(await (await fetch(service.url('/.well-known/jwks.json'))).json());
}

/** NATS spreads the requests over the replicas of the service. */
async function kidsOverNats(): Promise<string[]> {
  return kidsOf((await nc.request(createSubjects(auth.prefix).authJwks, new Uint8Array(), { timeout: 2_000 })).json());
}

/** What a gateway uses: keys fetched over NATS, refetched for an unknown kid. */
const verifierOverNats = () =>
  createTokenVerifier({
    keySource: requestKeySource(
      async (subject, data, timeout) => (await nc.request(subject, data, { timeout })).data,
      createSubjects(auth.prefix).authJwks,
    ),
    issuer: 'switchboard',
    audience: 'switchboard',
  });

async function query<T>(text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: auth.databaseUrl });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end();
  }
}

describe('changing JWT_PRIVATE_KEY', () => {
  it('keeps verifying tokens of the replaced key after a restart with the new one', async () => {
    // 30-day tokens: the replaced key must outlive a 1-hour TTL of the replica that replaces it.
    const first = await startAuth(K1, { ACCESS_TOKEN_TTL: '30d' });
    const t1 = await tokenFrom(first);
    expect(await first.stop()).toBe(0);

    const second = await startAuth(K2);
    const t2 = await tokenFrom(second);
    expect(kidOf(t2)).not.toBe(kidOf(t1));
    expect(decodeProtectedHeader(t2).alg).toBe('ES256');

    const bothKids = [kidOf(t2), kidOf(t1)];
    expect(await kidsOverHttp(second)).toEqual(bothKids);
    expect(await kidsOverNats()).toEqual(bothKids);
    const verifier = verifierOverNats();
    await expect(verifier.verify(t1)).resolves.toMatchObject({ username: ADMIN.username, role: 'admin' });
    await expect(verifier.verify(t2)).resolves.toMatchObject({ username: ADMIN.username, role: 'admin' });

    // The service itself accepts the old admin token too.
    const created = await fetch(second.url('/v1/users'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${t1}` },
      body: JSON.stringify({ username: 'agent-after-rotation', password: 'agent-password', role: 'agent' }),
    });
    expect(created.status).toBe(201);

    // Each key is published past its own tokens' lifetime (plus an hour between records and five
    // minutes of margin), and the database holds no private key.
    const rows = await query<{ kid: string; hours: number; public_jwk: Record<string, unknown> }>(
      'select kid, extract(epoch from publish_until - last_signed_at)::float8 / 3600 as hours, public_jwk from public_signing_keys',
    );
    const hoursOf = Object.fromEntries(rows.map((row) => [row.kid, row.hours]));
    expect(hoursOf[kidOf(t1) ?? '']).toBeCloseTo(30 * 24 + 1 + 5 / 60, 3);
    expect(hoursOf[kidOf(t2) ?? '']).toBeCloseTo(1 + 1 + 5 / 60, 3);
    for (const row of rows) expect(row.public_jwk).not.toHaveProperty('d');
    expect(await query('select kid from signing_keys')).toEqual([]);
  });

  it('stops publishing and accepting a replaced key once its row is deleted (the way to withdraw a leaked key)', async () => {
    const first = await startAuth(K1);
    const t1 = await tokenFrom(first);
    await first.stop();
    const second = await startAuth(K2);
    expect(await kidsOverHttp(second)).toContain(kidOf(t1));
    const createAgent = (username: string) =>
      fetch(second.url('/v1/users'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${t1}` },
        body: JSON.stringify({ username, password: 'agent-password', role: 'agent' }),
      });
    // The service has verified with the old key, so it holds it among its keys.
    expect((await createAgent('agent-before-withdrawal')).status).toBe(201);

    await query('delete from public_signing_keys where kid = $1', [kidOf(t1)]);
    await waitFor(async () => !(await kidsOverHttp(second)).includes(kidOf(t1) ?? ''), 5_000, 'the deleted key to leave the JWKS');
    expect(await kidsOverNats()).not.toContain(kidOf(t1));
    await expect(verifierOverNats().verify(t1)).rejects.toMatchObject({ code: TokenErrorCode.UnknownKey });
    // Nor does the service itself take a token of the withdrawn key, once the keys it verified
    // with are older than the JWKS cache (2 s), not after the 10 minutes a gateway keeps them.
    let attempt = 0;
    await waitFor(
      async () => (await createAgent(`agent-after-withdrawal-${attempt++}`)).status === 401,
      5_000,
      'the service to refuse the withdrawn key',
    );
  });

  it('lets every replica of a rolling update, old key or new, publish both keys', async () => {
    const old = await startAuth(K1);
    const t1 = await tokenFrom(old);
    // The old replica has read its keys before the new one records its own.
    expect(await kidsOverHttp(old)).toEqual([kidOf(t1)]);

    const updated = await startAuth(K2);
    const t2 = await tokenFrom(updated);
    // Both, as soon as the new replica signs: it waits at start until the old one's cached keys are stale.
    expect(await kidsOverHttp(old)).toEqual([kidOf(t1), kidOf(t2)]);
    expect(await kidsOverHttp(updated)).toEqual([kidOf(t2), kidOf(t1)]);
    for (let i = 0; i < 10; i++) expect((await kidsOverNats()).sort()).toEqual([kidOf(t1), kidOf(t2)].sort());

    // A gateway verifies tokens of both keys, whichever replica answers it.
    for (let i = 0; i < 4; i++) {
      const verifier = verifierOverNats();
      await expect(verifier.verify(t1)).resolves.toMatchObject({ username: ADMIN.username });
      await expect(verifier.verify(t2)).resolves.toMatchObject({ username: ADMIN.username });
    }
  });
});
