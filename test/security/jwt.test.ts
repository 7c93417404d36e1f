/**
 * Forged and doctored access tokens presented to a real gateway in real `auth` frames. The token
 * library's unit tests cover the same attacks against the verifier alone; these prove that the
 * gateway, fetching its keys from the auth service over NATS, refuses every one of them with
 * `auth_failed` and close 4001 (a token naming an unknown key first as `unavailable`, while the
 * keys were fetched too recently to ask again), and keeps serving everyone else.
 */
import { createHmac, createPublicKey } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Stack, startStack, type TestClient } from '@switchboard/testing';
import { DEFAULT_MIN_REFETCH_INTERVAL_MS } from '@switchboard/tokens';
import type { JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  accessClaims,
  authenticate,
  b64url,
  type Ed25519Key,
  ed25519Key,
  expectPong,
  expectRefused,
  expectRefusedOrHeldBack,
  nowSeconds,
  signEdDSA,
  sleep,
} from './helpers.js';

let stack: Stack;
/** The key the stack's auth service signs with, known to the test so it can sign arbitrary claims. */
let realKey: Ed25519Key;
/** A key of the attacker's own. */
let evilKey: Ed25519Key;
let customer: { id: number; token: string; username: string };
let bystander: TestClient;
/** Serves the attacker's key set at any path and counts the requests it gets. */
let keyServer: Server;
let keyServerRequests = 0;
let keyServerUrl = '';

beforeAll(async () => {
  realKey = await ed25519Key();
  evilKey = await ed25519Key();
  stack = await startStack({ env: { JWT_PRIVATE_KEY: realKey.pem } });
  customer = await stack.user('user');
  keyServer = createServer((_request, response) => {
    keyServerRequests++;
    response
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ keys: [{ ...evilKey.publicJwk, kid: evilKey.kid }] }));
  });
  await new Promise<void>((resolve) => keyServer.listen(0, '127.0.0.1', resolve));
  keyServerUrl = `http://127.0.0.1:${(keyServer.address() as AddressInfo).port}`;
  const { client, reply } = await authenticate(stack.wsUrl(), customer.token);
  expect(reply.type).toBe('auth_success');
  bystander = client;
});

afterEach(async () => {
  // Whatever was just thrown at the gateway, an authenticated client elsewhere keeps being served.
  await expectPong(bystander);
});

afterAll(async () => {
  await bystander?.close();
  keyServer?.close();
  await stack?.stop();
});

describe('the stack signs with the known key', () => {
  it('publishes exactly that key, and accepts a token the test signs with it', async () => {
    const jwks = (await (await fetch(stack.auth.url('/.well-known/jwks.json'))).json()) as { keys: JWK[] };
    expect(jwks.keys).toEqual([expect.objectContaining({ kty: 'OKP', crv: 'Ed25519', x: realKey.publicJwk.x, kid: realKey.kid })]);
    // So each refusal below is about what that case changes, not about the test's signing.
    const { client, reply } = await authenticate(
      stack.wsUrl(),
      signEdDSA(realKey.privateKey, { kid: realKey.kid }, accessClaims(customer)),
    );
    expect(reply).toMatchObject({ type: 'auth_success', user: { id: customer.id, username: customer.username, role: 'user' } });
    await client.close();
  });
});

describe('forged tokens', () => {
  const unsigned = (header: Record<string, unknown>) => `${b64url(header)}.${b64url(accessClaims(customer))}.`;
  const hs256 = (secret: Buffer | string) => {
    const input = `${b64url({ alg: 'HS256', typ: 'JWT', kid: realKey.kid })}.${b64url({ ...accessClaims(customer), role: 'admin' })}`;
    return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
  };

  const cases: [string, () => string][] = [
    ['alg none', () => unsigned({ alg: 'none', typ: 'JWT' })],
    ['alg None with the real kid', () => unsigned({ alg: 'None', typ: 'JWT', kid: realKey.kid })],
    [
      'alg NONE with a signature of the real key left on',
      () => `${unsigned({ alg: 'NONE' })}${signEdDSA(realKey.privateKey, {}, {}).split('.')[2]}`,
    ],
    ['HS256 keyed with the public key bytes (JWK x)', () => hs256(Buffer.from(realKey.publicJwk.x ?? '', 'base64url'))],
    ['HS256 keyed with the JWK x text', () => hs256(realKey.publicJwk.x ?? '')],
    [
      'HS256 keyed with the public key PEM',
      () => hs256(createPublicKey(realKey.privateKey).export({ type: 'spki', format: 'pem' }).toString()),
    ],
    ['HS256 keyed with the published JWK as JSON', () => hs256(JSON.stringify({ ...realKey.publicJwk, kid: realKey.kid }))],
    [
      'a wrong iss, signed by the real key',
      () => signEdDSA(realKey.privateKey, { kid: realKey.kid }, { ...accessClaims(customer), iss: 'evil' }),
    ],
    [
      'a wrong aud, signed by the real key',
      () => signEdDSA(realKey.privateKey, { kid: realKey.kid }, { ...accessClaims(customer), aud: 'other-app' }),
    ],
    [
      'expired a minute ago (beyond the clock tolerance), signed by the real key',
      () =>
        signEdDSA(
          realKey.privateKey,
          { kid: realKey.kid },
          { ...accessClaims(customer), iat: nowSeconds() - 3600, exp: nowSeconds() - 60 },
        ),
    ],
    [
      'nbf in the future, signed by the real key',
      () => signEdDSA(realKey.privateKey, { kid: realKey.kid }, { ...accessClaims(customer), nbf: nowSeconds() + 600 }),
    ],
    ['an unknown kid, signed by the real key', () => signEdDSA(realKey.privateKey, { kid: 'no-such-key' }, accessClaims(customer))],
    ['an unknown kid, signed by the attacker', () => signEdDSA(evilKey.privateKey, { kid: evilKey.kid }, accessClaims(customer))],
    [
      'the real kid, signed by the attacker',
      () => signEdDSA(evilKey.privateKey, { kid: realKey.kid }, { ...accessClaims(customer), role: 'admin' }),
    ],
    ['no kid, signed by the attacker', () => signEdDSA(evilKey.privateKey, {}, accessClaims(customer))],
    [
      'jku and x5u pointing at the attacker, signed by the attacker',
      () =>
        signEdDSA(
          evilKey.privateKey,
          { kid: evilKey.kid, jku: `${keyServerUrl}/jwks.json`, x5u: `${keyServerUrl}/cert.pem` },
          { ...accessClaims(customer), role: 'admin' },
        ),
    ],
    [
      'jku pointing at the attacker with the real kid, signed by the attacker',
      () => signEdDSA(evilKey.privateKey, { kid: realKey.kid, jku: `${keyServerUrl}/jwks.json` }, accessClaims(customer)),
    ],
    [
      'the attacker public key embedded as jwk, signed by the attacker',
      () => signEdDSA(evilKey.privateKey, { jwk: evilKey.publicJwk }, accessClaims(customer)),
    ],
    [
      'the attacker public key embedded as jwk with the real kid, signed by the attacker',
      () => signEdDSA(evilKey.privateKey, { kid: realKey.kid, jwk: { ...evilKey.publicJwk, kid: realKey.kid } }, accessClaims(customer)),
    ],
    [
      'a genuine token with its role changed to admin',
      () => {
        const [header, payload, signature] = customer.token.split('.');
        const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as Record<string, unknown>;
        return `${header}.${b64url({ ...claims, role: 'admin' })}.${signature}`;
      },
    ],
    [
      'a genuine token with its sub changed to another user',
      () => {
        const [header, payload, signature] = customer.token.split('.');
        const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as Record<string, unknown>;
        return `${header}.${b64url({ ...claims, sub: String(customer.id + 1) })}.${signature}`;
      },
    ],
    ['a genuine token with its signature stripped', () => `${customer.token.split('.').slice(0, 2).join('.')}.`],
    [
      'a genuine token with the signature of another token',
      () => `${customer.token.split('.').slice(0, 2).join('.')}.${signEdDSA(evilKey.privateKey, {}, {}).split('.')[2]}`,
    ],
    [
      'a sub that is not a user id, signed by the real key',
      () => signEdDSA(realKey.privateKey, { kid: realKey.kid }, { ...accessClaims(customer), sub: `${customer.id} or 1=1` }),
    ],
    [
      'an unknown role, signed by the real key',
      () => signEdDSA(realKey.privateKey, { kid: realKey.kid }, { ...accessClaims(customer), role: 'root' }),
    ],
    ['not a JWT at all', () => 'not.a.jwt'],
  ];

  /** Tokens naming a key the auth service does not publish: see expectRefusedOrHeldBack. */
  const unknownKid = new Set([
    'an unknown kid, signed by the real key',
    'an unknown kid, signed by the attacker',
    'jku and x5u pointing at the attacker, signed by the attacker',
  ]);

  it.each(cases)(
    'refuses %s with auth_failed and close 4001 (or, for an unknown kid, holds it back unauthenticated)',
    async (name, forge) => {
      if (unknownKid.has(name)) await expectRefusedOrHeldBack(stack.wsUrl(), forge());
      else await expectRefused(stack.wsUrl(), forge());
    },
  );

  it('refuses an unknown kid for good once the keys were asked for again', async () => {
    const token = signEdDSA(realKey.privateKey, { kid: 'no-such-key' }, accessClaims(customer));
    await sleep(DEFAULT_MIN_REFETCH_INTERVAL_MS);
    await expectRefused(stack.wsUrl(), token);
  });

  it('never fetched anything from the jku or x5u URLs', () => {
    expect(keyServerRequests).toBe(0);
  });
});

describe('after the attacks', () => {
  it('still authenticates a genuine token, and the gateway is ready', async () => {
    const { client, reply } = await authenticate(stack.wsUrl(), customer.token);
    expect(reply.type).toBe('auth_success');
    await expectPong(client);
    await client.close();
    const gateway = stack.gateways[0];
    expect((await fetch(gateway?.opsUrl('/readyz') ?? '')).status).toBe(200);
  });
});
