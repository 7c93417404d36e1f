import { createHmac, createPrivateKey, sign as signWithNodeCrypto } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type CryptoKey,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JSONWebKeySet,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
  SignJWT,
} from 'jose';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { TokenError, TokenErrorCode } from './errors.js';
import type { KeySource } from './key-source.js';
import {
  createTokenVerifier,
  DEFAULT_MAX_KEY_AGE_MS,
  DEFAULT_MIN_REFETCH_INTERVAL_MS,
  DEFAULT_RETRY_WITHOUT_KEYS_MS,
  type TokenVerifierOptions,
  type VerifiedToken,
} from './verifier.js';

const ISSUER = 'https://auth.switchboard.test';
const AUDIENCE = 'switchboard-gateway';
/** A fixed wall clock (epoch ms, a whole second) that every verifier and token in this file is built around. */
const T0 = 1_750_000_000_000;
const T0_S = T0 / 1000;
const TTL_S = 900;

interface SigningKey {
  kid: string;
  alg: 'EdDSA' | 'ES256';
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
  privateJwk: JWK;
}

async function makeKey(alg: 'EdDSA' | 'ES256', kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  const privateJwk: JWK = await exportJWK(privateKey);
  return { kid, alg, privateKey, publicKey, publicJwk, privateJwk };
}

const jwksOf = (...keys: SigningKey[]): JSONWebKeySet => ({ keys: keys.map((key) => ({ ...key.publicJwk })) });

let edKey: SigningKey;
let esKey: SigningKey;
/** Same kid as `edKey`, different key material: what an attacker who knows the kid would hold. */
let impostorKey: SigningKey;
/** A key the verifier's source has never published. */
let strayKey: SigningKey;

beforeAll(async () => {
  edKey = await makeKey('EdDSA', 'ed-1');
  esKey = await makeKey('ES256', 'es-1');
  impostorKey = await makeKey('EdDSA', 'ed-1');
  strayKey = await makeKey('EdDSA', 'stray-1');
});

afterEach(() => {
  vi.restoreAllMocks();
});

const defaultClaims = (): JWTPayload => ({
  sub: '42',
  role: 'agent',
  username: 'alice',
  iss: ISSUER,
  aud: AUDIENCE,
  iat: T0_S,
  exp: T0_S + TTL_S,
});

interface TokenOptions {
  key?: SigningKey;
  /** Merged over the default claims. */
  claims?: Record<string, unknown>;
  /** Default claims to leave out entirely. */
  omit?: string[];
  /** Extra protected-header parameters (kid and alg come from the key unless overridden). */
  header?: Partial<JWTHeaderParameters>;
}

function claimsFor(options: TokenOptions): Record<string, unknown> {
  const claims: Record<string, unknown> = { ...defaultClaims(), ...options.claims };
  for (const name of options.omit ?? []) delete claims[name];
  return claims;
}

async function signToken(options: TokenOptions = {}): Promise<string> {
  const key = options.key ?? edKey;
  return new SignJWT(claimsFor(options)).setProtectedHeader({ alg: key.alg, kid: key.kid, ...options.header }).sign(key.privateKey);
}

const segment = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** Builds a compact JWS by hand, so headers and signatures jose would refuse to produce can be tested. */
function handBuiltToken(header: Record<string, unknown>, claims: Record<string, unknown>, signature: (input: string) => string): string {
  const input = `${segment(header)}.${segment(claims)}`;
  return `${input}.${signature(input)}`;
}

interface CountingSource {
  source: KeySource;
  readonly calls: number;
  publish(jwks: JSONWebKeySet): void;
  /** While set, fetches throw (counted all the same), as with the auth service down. */
  failing: boolean;
}

function countingSource(initial: JSONWebKeySet): CountingSource {
  let current = initial;
  let calls = 0;
  const counting: CountingSource = {
    source: {
      fetchKeys: async () => {
        calls += 1;
        if (counting.failing) throw new Error('auth service down');
        return current;
      },
    },
    get calls() {
      return calls;
    },
    publish(jwks) {
      current = jwks;
    },
    failing: false,
  };
  return counting;
}

interface Clock {
  now: () => number;
  advance(ms: number): void;
}

function fixedClock(start = T0): Clock {
  let time = start;
  return {
    now: () => time,
    advance(ms) {
      time += ms;
    },
  };
}

function verifierFor(source: KeySource, clock: Clock = fixedClock(), overrides: Partial<TokenVerifierOptions> = {}) {
  return createTokenVerifier({ keySource: source, issuer: ISSUER, audience: AUDIENCE, now: clock.now, elapsed: clock.now, ...overrides });
}

/** A verifier on a counting source that holds edKey, after its first fetch (to verify an edKey token). */
async function verifierAfterFirstFetch(overrides: Partial<TokenVerifierOptions> = {}) {
  const keys = countingSource(jwksOf(edKey));
  const clock = fixedClock();
  const verifier = verifierFor(keys.source, clock, overrides);
  await verifier.verify(await signToken({ key: edKey }));
  return { keys, clock, verifier };
}

/**
 * Withdraws edKey from the source (say after a leak): its token still verifies `afterMs - 1` later
 * without a fetch, and is refused `afterMs` later, by the fetch made then.
 */
async function expectDroppedAfter(
  { keys, clock, verifier }: Awaited<ReturnType<typeof verifierAfterFirstFetch>>,
  edToken: string,
  afterMs: number,
) {
  const calls = keys.calls;
  keys.publish(jwksOf(esKey));
  clock.advance(afterMs - 1);
  await expect(verifier.verify(edToken)).resolves.toMatchObject({ userId: 42 });
  expect(keys.calls).toBe(calls);
  clock.advance(1);
  await expectRefused(verifier.verify(edToken), TokenErrorCode.UnknownKey);
  expect(keys.calls).toBe(calls + 1);
}

async function refusalOf(promise: Promise<unknown>): Promise<TokenError> {
  const outcome = await promise.then(
    (value) => ({ settled: 'fulfilled' as const, value }),
    (error: unknown) => ({ settled: 'rejected' as const, error }),
  );
  if (outcome.settled === 'fulfilled')
    throw new Error(`expected the token to be refused, but it verified: ${JSON.stringify(outcome.value)}`);
  if (!(outcome.error instanceof TokenError)) throw new Error(`expected a TokenError, got ${String(outcome.error)}`);
  return outcome.error;
}

async function expectRefused(promise: Promise<unknown>, code: TokenErrorCode): Promise<TokenError> {
  const error = await refusalOf(promise);
  expect(error.code).toBe(code);
  return error;
}

/** Each outcome as the verified user id, or the refusal code, so a failed assertion shows what went wrong. */
function userIdsOrReasons(outcomes: PromiseSettledResult<VerifiedToken>[]): unknown[] {
  return outcomes.map((outcome) =>
    outcome.status === 'fulfilled' ? outcome.value.userId : outcome.reason instanceof TokenError ? outcome.reason.code : outcome.reason,
  );
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve: (value: T) => void = () => undefined;
  const promise = new Promise<T>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}

/**
 * A verifier on a fixed clock whose source answers `jwksOf(edKey)` at once, but for its second
 * fetch, which waits until `answerSecond` is called.
 */
function verifierWithSecondFetchHeld(overrides: Partial<TokenVerifierOptions> = {}) {
  const clock = fixedClock();
  const counter = { calls: 0 };
  const second = deferred<JSONWebKeySet>();
  const verifier = verifierFor(
    {
      fetchKeys: () => {
        counter.calls += 1;
        return counter.calls === 2 ? second.promise : Promise.resolve(jwksOf(edKey));
      },
    },
    clock,
    overrides,
  );
  return { clock, verifier, counter, answerSecond: (jwks: JSONWebKeySet) => second.resolve(jwks) };
}

describe('createTokenVerifier', () => {
  describe('when the token is valid', () => {
    it('verifies an EdDSA token and maps its claims to the user', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey, esKey)).source);

      await expect(verifier.verify(await signToken({ key: edKey }))).resolves.toEqual({
        userId: 42,
        role: 'agent',
        username: 'alice',
        expiresAt: (T0_S + TTL_S) * 1000,
        tokenVersion: 0,
      });
    });

    it('verifies an ES256 token and maps its claims to the user', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey, esKey)).source);
      const token = await signToken({ key: esKey, claims: { sub: '7', role: 'admin', username: 'root', exp: T0_S + 60 } });

      await expect(verifier.verify(token)).resolves.toEqual({
        userId: 7,
        role: 'admin',
        username: 'root',
        expiresAt: (T0_S + 60) * 1000,
        tokenVersion: 0,
      });
    });

    it('accepts every known role', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);

      for (const role of ['user', 'agent', 'admin'] as const) {
        await expect(verifier.verify(await signToken({ claims: { role } }))).resolves.toMatchObject({ role });
      }
    });

    it('accepts a hand-built token with a genuine signature, so the hand-built refusals below are about what they change', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);
      const privateKey = createPrivateKey({ key: edKey.privateJwk, format: 'jwk' });
      const token = handBuiltToken({ alg: 'EdDSA', kid: edKey.kid, typ: 'JWT' }, claimsFor({}), (input) =>
        signWithNodeCrypto(null, Buffer.from(input), privateKey).toString('base64url'),
      );

      await expect(verifier.verify(token)).resolves.toMatchObject({ userId: 42, role: 'agent' });
    });
  });

  describe("the token's version", () => {
    it('is its tv claim, and 0 for a token without one or with one this service did not write', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);
      const versionOf = async (claims: Record<string, unknown>) => (await verifier.verify(await signToken({ claims }))).tokenVersion;

      expect(await versionOf({ tv: 3 })).toBe(3);
      // Tokens of a release before tv.
      expect(await versionOf({})).toBe(0);
      for (const tv of [-1, 1.5, '3', Number.MAX_SAFE_INTEGER + 2]) expect(await versionOf({ tv })).toBe(0);
    });
  });

  describe('when the token is outside its validity period', () => {
    it('refuses an expired token as expired', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);
      const token = await signToken({ claims: { iat: T0_S - 3600, exp: T0_S - 60 } });

      await expectRefused(verifier.verify(token), TokenErrorCode.Expired);
    });

    it('refuses a token once the injected clock moves past its expiry', async () => {
      const clock = fixedClock();
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source, clock);
      const token = await signToken();

      await expect(verifier.verify(token)).resolves.toMatchObject({ userId: 42 });
      clock.advance((TTL_S + 60) * 1000);
      await expectRefused(verifier.verify(token), TokenErrorCode.Expired);
    });

    it('tolerates a small clock skew on expiry but not a larger one', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source, fixedClock(), { clockToleranceS: 5 });

      await expect(verifier.verify(await signToken({ claims: { iat: T0_S - 60, exp: T0_S - 2 } }))).resolves.toMatchObject({ userId: 42 });
      await expectRefused(verifier.verify(await signToken({ claims: { iat: T0_S - 60, exp: T0_S - 10 } })), TokenErrorCode.Expired);
    });

    it('refuses a token whose nbf is in the future as not yet valid', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);
      const token = await signToken({ claims: { nbf: T0_S + 120 } });

      await expectRefused(verifier.verify(token), TokenErrorCode.NotYetValid);
    });

    it('refuses a token without an expiry', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);

      await expectRefused(verifier.verify(await signToken({ omit: ['exp'] })), TokenErrorCode.Invalid);
    });
  });

  describe('when the token was issued for someone else', () => {
    it('refuses a token from another issuer', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);

      await expectRefused(verifier.verify(await signToken({ claims: { iss: 'https://evil.example' } })), TokenErrorCode.Invalid);
    });

    it('refuses a token without an issuer', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);

      await expectRefused(verifier.verify(await signToken({ omit: ['iss'] })), TokenErrorCode.Invalid);
    });

    it('refuses a token for another audience', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);

      await expectRefused(verifier.verify(await signToken({ claims: { aud: 'some-other-service' } })), TokenErrorCode.Invalid);
    });

    it('refuses a token without an audience', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);

      await expectRefused(verifier.verify(await signToken({ omit: ['aud'] })), TokenErrorCode.Invalid);
    });
  });

  describe('when the signature is not genuine', () => {
    it('refuses a token signed by another key that claims the same kid', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);

      await expectRefused(verifier.verify(await signToken({ key: impostorKey })), TokenErrorCode.Invalid);
    });

    it('refuses an unsigned token with alg none', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);

      for (const header of [
        { alg: 'none', typ: 'JWT' },
        { alg: 'none', kid: edKey.kid, typ: 'JWT' },
        { alg: 'None', kid: edKey.kid },
      ]) {
        const token = handBuiltToken(header, claimsFor({ claims: { role: 'admin' } }), () => '');
        await expectRefused(verifier.verify(token), TokenErrorCode.Invalid);
      }
    });

    it.each([
      ['the JWK x parameter as text', () => Buffer.from(String(edKey.publicJwk.x))],
      ['the raw public key bytes', () => Buffer.from(String(edKey.publicJwk.x), 'base64url')],
      ['the public JWK serialised as JSON', () => Buffer.from(JSON.stringify(edKey.publicJwk))],
    ])('refuses an HS256 token whose HMAC secret is %s', async (_name, secret) => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);
      const token = handBuiltToken({ alg: 'HS256', kid: edKey.kid, typ: 'JWT' }, claimsFor({ claims: { role: 'admin' } }), (input) =>
        createHmac('sha256', secret()).update(input).digest('base64url'),
      );

      await expectRefused(verifier.verify(token), TokenErrorCode.Invalid);
    });

    it.each([
      ['EdDSA', () => edKey],
      ['ES256', () => esKey],
    ])('refuses an HS256 token whose HMAC secret is the %s public key in PEM form', async (_alg, key) => {
      const verifier = verifierFor(countingSource(jwksOf(key())).source);
      const pem = await exportSPKI(key().publicKey);
      const token = handBuiltToken({ alg: 'HS256', kid: key().kid, typ: 'JWT' }, claimsFor({ claims: { role: 'admin' } }), (input) =>
        createHmac('sha256', pem).update(input).digest('base64url'),
      );

      await expectRefused(verifier.verify(token), TokenErrorCode.Invalid);
    });

    it.each([
      ['ES384', 'ES384'],
      ['RS256', 'RS256'],
      ['PS256', 'PS256'],
    ] as const)('refuses a %s token even when its key is published', async (_name, alg) => {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      const jwks: JSONWebKeySet = { keys: [{ ...(await exportJWK(publicKey)), kid: 'other-alg', alg }] };
      const verifier = verifierFor(countingSource(jwks).source);
      const token = await new SignJWT(claimsFor({})).setProtectedHeader({ alg, kid: 'other-alg' }).sign(privateKey);

      await expectRefused(verifier.verify(token), TokenErrorCode.Invalid);
    });

    it('refuses a token whose payload was changed after signing', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);
      const token = await signToken({ claims: { role: 'user' } });
      const [header, payload, signature] = token.split('.');
      const claims = JSON.parse(Buffer.from(String(payload), 'base64url').toString('utf8')) as Record<string, unknown>;
      const tampered = `${header}.${segment({ ...claims, role: 'admin' })}.${signature}`;

      await expect(verifier.verify(token)).resolves.toMatchObject({ role: 'user' });
      await expectRefused(verifier.verify(tampered), TokenErrorCode.Invalid);
    });

    it('refuses a token whose signature was stripped', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);
      const [header, payload] = (await signToken()).split('.');

      await expectRefused(verifier.verify(`${header}.${payload}.`), TokenErrorCode.Invalid);
    });

    it.each(['', 'garbage', 'a.b', 'a.b.c', 'a.b.c.d.e'])('refuses the malformed token %j as invalid', async (token) => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);

      await expectRefused(verifier.verify(token), TokenErrorCode.Invalid);
    });
  });

  describe('when the token names a key the source does not publish', () => {
    it('refuses a token with an unknown kid as unknown_key', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey, esKey)).source);

      await expectRefused(verifier.verify(await signToken({ key: strayKey })), TokenErrorCode.UnknownKey);
    });

    it('ignores jku and x5u headers pointing elsewhere and consults only the key source', async () => {
      const fetchSpy = vi.spyOn(globalThis, 'fetch');
      const keys = countingSource(jwksOf(edKey));
      const verifier = verifierFor(keys.source);
      const header = { jku: 'http://127.0.0.1:1/jwks.json', x5u: 'http://127.0.0.1:1/cert.pem' };

      await expectRefused(verifier.verify(await signToken({ key: strayKey, header })), TokenErrorCode.UnknownKey);
      await expectRefused(verifier.verify(await signToken({ key: impostorKey, header })), TokenErrorCode.Invalid);
      expect(fetchSpy).not.toHaveBeenCalled();
      expect(keys.calls).toBe(1);
    });

    it('never fetches an attacker-controlled jku even when it serves the signing key', async () => {
      let requests = 0;
      const attackerJwks = JSON.stringify(jwksOf(strayKey, impostorKey));
      const server = createServer((_request, response) => {
        requests += 1;
        response.writeHead(200, { 'content-type': 'application/json' }).end(attackerJwks);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const { port } = server.address() as AddressInfo;
        const header = { jku: `http://127.0.0.1:${port}/jwks.json`, x5u: `http://127.0.0.1:${port}/cert.pem` };
        const keys = countingSource(jwksOf(edKey));
        const verifier = verifierFor(keys.source);

        await expectRefused(verifier.verify(await signToken({ key: strayKey, header })), TokenErrorCode.UnknownKey);
        await expectRefused(verifier.verify(await signToken({ key: impostorKey, header })), TokenErrorCode.Invalid);
        expect(requests).toBe(0);
        expect(keys.calls).toBe(1);
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    });

    it('ignores a public key embedded in the jwk header', async () => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);

      const embeddedStray = await signToken({ key: strayKey, header: { jwk: strayKey.publicJwk } });
      const embeddedImpostor = await signToken({ key: impostorKey, header: { jwk: impostorKey.publicJwk } });

      await expectRefused(verifier.verify(embeddedStray), TokenErrorCode.UnknownKey);
      await expectRefused(verifier.verify(embeddedImpostor), TokenErrorCode.Invalid);
    });
  });

  describe('when the claims do not describe a user', () => {
    it.each([
      ['missing', undefined],
      ['empty', ''],
      ['not a number', 'alice'],
      ['not an integer', '1.5'],
      ['zero', '0'],
      ['negative', '-3'],
      ['zero-padded', '042'],
      ['in exponent notation', '4e1'],
      ['beyond the safe integer range', '9007199254740993'],
    ])('refuses a token whose sub is %s', async (_name, sub) => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);
      const token = await signToken(sub === undefined ? { omit: ['sub'] } : { claims: { sub } });

      await expectRefused(verifier.verify(token), TokenErrorCode.Invalid);
    });

    it.each([
      ['missing', undefined],
      ['unknown', 'superuser'],
      ['differently cased', 'Admin'],
      ['not a string', 1],
    ])('refuses a token whose role is %s', async (_name, role) => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);
      const token = await signToken(role === undefined ? { omit: ['role'] } : { claims: { role } });

      await expectRefused(verifier.verify(token), TokenErrorCode.Invalid);
    });

    it.each([
      ['missing', undefined],
      ['not a string', 42],
      ['null', null],
    ])('refuses a token whose username is %s', async (_name, username) => {
      const verifier = verifierFor(countingSource(jwksOf(edKey)).source);
      const token = await signToken(username === undefined ? { omit: ['username'] } : { claims: { username } });

      await expectRefused(verifier.verify(token), TokenErrorCode.Invalid);
    });
  });

  describe('when the key source fails', () => {
    it('refuses with unavailable when the source throws, keeping the cause', async () => {
      const failure = new Error('nats: no responders');
      const verifier = verifierFor({
        fetchKeys: async () => {
          throw failure;
        },
      });

      const error = await expectRefused(verifier.verify(await signToken()), TokenErrorCode.Unavailable);
      expect(error.cause).toBe(failure);
    });

    it('refuses what no key could make valid as invalid, without asking the source, rather than unavailable', async () => {
      const fetchKeys = vi.fn(async (): Promise<JSONWebKeySet> => {
        throw new Error('nats: no responders');
      });
      const verifier = verifierFor({ fetchKeys });
      const none = handBuiltToken({ alg: 'none', kid: edKey.kid }, claimsFor({}), () => '');
      const hs256 = handBuiltToken({ alg: 'HS256', kid: edKey.kid }, claimsFor({}), () => 'c2ln');
      for (const token of ['not-a-jwt', 'a.b.c', none, hs256, `${await signToken()}.extra`]) {
        // Before: unavailable, after a fetch of the keys, for a token that could never verify.
        await expectRefused(verifier.verify(token), TokenErrorCode.Invalid);
      }
      expect(fetchKeys).not.toHaveBeenCalled();
    });

    it('refuses with unavailable when the source returns something that is not a key set', async () => {
      const verifier = verifierFor({ fetchKeys: async () => ({ keys: 'none' }) as unknown as JSONWebKeySet });

      await expectRefused(verifier.verify(await signToken()), TokenErrorCode.Unavailable);
    });

    it('tries the source again once it recovers, at most once a second while it has no keys', async () => {
      let calls = 0;
      const clock = fixedClock();
      const verifier = verifierFor(
        {
          fetchKeys: async () => {
            calls += 1;
            if (calls === 1) throw new Error('auth service down');
            return jwksOf(edKey);
          },
        },
        clock,
      );
      const token = await signToken();

      await expectRefused(verifier.verify(token), TokenErrorCode.Unavailable);
      // Within the second: refused at once, without asking (before, every token asked).
      clock.advance(DEFAULT_RETRY_WITHOUT_KEYS_MS - 1);
      for (let i = 0; i < 5; i++) await expectRefused(verifier.verify(token), TokenErrorCode.Unavailable);
      expect(calls).toBe(1);
      clock.advance(1);
      await expect(verifier.verify(token)).resolves.toMatchObject({ userId: 42 });
      expect(calls).toBe(2);
    });

    it('tries the source again even when a previous attempt threw synchronously', async () => {
      let calls = 0;
      const clock = fixedClock();
      const verifier = verifierFor(
        {
          fetchKeys: () => {
            calls += 1;
            if (calls === 1) throw new Error('not connected');
            return Promise.resolve(jwksOf(edKey));
          },
        },
        clock,
      );
      const token = await signToken();

      await expectRefused(verifier.verify(token), TokenErrorCode.Unavailable);
      clock.advance(DEFAULT_RETRY_WITHOUT_KEYS_MS);
      await expect(verifier.verify(token)).resolves.toMatchObject({ userId: 42 });
      expect(calls).toBe(2);
    });

    it('keeps verifying with the cached keys when a refetch fails', async () => {
      const clock = fixedClock();
      const keys = countingSource(jwksOf(edKey));
      const verifier = verifierFor(keys.source, clock);
      const token = await signToken();

      await expect(verifier.verify(token)).resolves.toMatchObject({ userId: 42 });
      keys.failing = true;
      clock.advance(DEFAULT_MIN_REFETCH_INTERVAL_MS + 1);
      await expectRefused(verifier.verify(await signToken({ key: strayKey })), TokenErrorCode.Unavailable);
      await expect(verifier.verify(token)).resolves.toMatchObject({ userId: 42 });
    });
  });

  describe('fetching and caching keys', () => {
    it('fetches the keys once and reuses them for later tokens', async () => {
      const keys = countingSource(jwksOf(edKey, esKey));
      const clock = fixedClock();
      const verifier = verifierFor(keys.source, clock);

      await verifier.verify(await signToken({ key: edKey }));
      clock.advance(DEFAULT_MIN_REFETCH_INTERVAL_MS * 10);
      await verifier.verify(await signToken({ key: esKey }));
      await verifier.verify(await signToken({ key: edKey, claims: { sub: '9' } }));
      await expectRefused(verifier.verify(await signToken({ key: impostorKey })), TokenErrorCode.Invalid);

      expect(keys.calls).toBe(1);
    });

    it('refetches on an unknown kid and picks up a newly published key', async () => {
      const { keys, clock, verifier } = await verifierAfterFirstFetch();

      keys.publish(jwksOf(edKey, esKey));
      clock.advance(DEFAULT_MIN_REFETCH_INTERVAL_MS);

      await expect(verifier.verify(await signToken({ key: esKey }))).resolves.toMatchObject({ userId: 42 });
      expect(keys.calls).toBe(2);
      await expect(verifier.verify(await signToken({ key: edKey }))).resolves.toMatchObject({ userId: 42 });
      expect(keys.calls).toBe(2);
    });

    it('stops accepting a key that the source no longer publishes after a refetch', async () => {
      const { keys, clock, verifier } = await verifierAfterFirstFetch();

      keys.publish(jwksOf(esKey));
      clock.advance(DEFAULT_MIN_REFETCH_INTERVAL_MS);
      await verifier.verify(await signToken({ key: esKey }));

      // Too soon after that refetch to ask again, the key might be one not published yet: retry later.
      const edToken = await signToken({ key: edKey });
      await expectRefused(verifier.verify(edToken), TokenErrorCode.Unavailable);
      // Asked again, the source still does not publish it: refused for good.
      clock.advance(DEFAULT_MIN_REFETCH_INTERVAL_MS);
      await expectRefused(verifier.verify(edToken), TokenErrorCode.UnknownKey);
    });

    it('fetches the keys again once they are maxKeyAgeMs old, so a key the source dropped stops verifying', async () => {
      const fetched = await verifierAfterFirstFetch();
      const edToken = await signToken({ key: edKey });
      await expect(fetched.verifier.verify(edToken)).resolves.toMatchObject({ userId: 42 });

      await expectDroppedAfter(fetched, edToken, DEFAULT_MAX_KEY_AGE_MS);
      expect(fetched.keys.calls).toBe(2);
    });

    it('measures the age of its keys on a clock that stepping the wall clock back does not move', async () => {
      const keys = countingSource(jwksOf(edKey));
      const wall = fixedClock();
      const elapsed = fixedClock(0);
      const verifier = createTokenVerifier({
        keySource: keys.source,
        issuer: ISSUER,
        audience: AUDIENCE,
        now: wall.now,
        elapsed: elapsed.now,
      });
      const edToken = await signToken({ key: edKey });
      await expect(verifier.verify(edToken)).resolves.toMatchObject({ userId: 42 });

      keys.publish(jwksOf(esKey)); // edKey withdrawn
      wall.advance(-3_600_000); // NTP steps a clock that ran an hour ahead back
      elapsed.advance(DEFAULT_MAX_KEY_AGE_MS);
      await expectRefused(verifier.verify(edToken), TokenErrorCode.UnknownKey);
      expect(keys.calls).toBe(2);
    });

    it('keeps the old keys when fetching them again after maxKeyAgeMs fails', async () => {
      const { keys, clock, verifier } = await verifierAfterFirstFetch();
      const token = await signToken();
      await expect(verifier.verify(token)).resolves.toMatchObject({ userId: 42 });

      keys.failing = true;
      clock.advance(DEFAULT_MAX_KEY_AGE_MS);
      await expect(verifier.verify(token)).resolves.toMatchObject({ userId: 42 });
      await expect(verifier.verify(token)).resolves.toMatchObject({ userId: 42 });
      expect(keys.calls).toBe(2); // one failed attempt, not one per verify
    });

    it('asks again minRefetchIntervalMs after a failed fetch of old keys, so a key dropped meanwhile stops verifying', async () => {
      const fetched = await verifierAfterFirstFetch();
      const edToken = await signToken({ key: edKey });

      fetched.keys.failing = true; // one periodic fetch is lost (a NATS blip)
      fetched.clock.advance(DEFAULT_MAX_KEY_AGE_MS);
      await expect(fetched.verifier.verify(edToken)).resolves.toMatchObject({ userId: 42 });
      expect(fetched.keys.calls).toBe(2);

      fetched.keys.failing = false;
      // Before, the failed attempt counted as a fetch: edKey verified for another maxKeyAgeMs.
      await expectDroppedAfter(fetched, edToken, DEFAULT_MIN_REFETCH_INTERVAL_MS);
      expect(fetched.keys.calls).toBe(3);
    });

    it('does not refetch again for unknown kids within minRefetchIntervalMs, and does after it', async () => {
      const minRefetchIntervalMs = 30_000;
      const { keys, clock, verifier } = await verifierAfterFirstFetch({ minRefetchIntervalMs });
      expect(keys.calls).toBe(1);

      // Straight after the first fetch, an unknown kid is refused without asking again, as one to retry.
      await expectRefused(verifier.verify(await signToken({ key: strayKey })), TokenErrorCode.Unavailable);
      expect(keys.calls).toBe(1);

      clock.advance(minRefetchIntervalMs);
      await expectRefused(verifier.verify(await signToken({ key: strayKey })), TokenErrorCode.UnknownKey);
      expect(keys.calls).toBe(2);

      // The key is published now, but the last fetch was too recent to ask again.
      keys.publish(jwksOf(edKey, esKey));
      const esToken = await signToken({ key: esKey });
      for (let i = 0; i < 5; i += 1) {
        clock.advance(1000);
        await expectRefused(verifier.verify(esToken), TokenErrorCode.Unavailable);
      }
      clock.advance(minRefetchIntervalMs - 5000 - 1);
      await expectRefused(verifier.verify(esToken), TokenErrorCode.Unavailable);
      expect(keys.calls).toBe(2);

      clock.advance(1);
      await expect(verifier.verify(esToken)).resolves.toMatchObject({ userId: 42 });
      expect(keys.calls).toBe(3);
    });

    it('does not refetch for tokens refused for reasons other than an unknown kid', async () => {
      const { keys, clock, verifier } = await verifierAfterFirstFetch();
      clock.advance(DEFAULT_MIN_REFETCH_INTERVAL_MS * 2);

      await expectRefused(verifier.verify(await signToken({ key: impostorKey })), TokenErrorCode.Invalid);
      await expectRefused(verifier.verify(await signToken({ claims: { aud: 'elsewhere' } })), TokenErrorCode.Invalid);
      await expectRefused(verifier.verify(await signToken({ claims: { exp: T0_S - 3600, iat: T0_S - 7200 } })), TokenErrorCode.Expired);

      expect(keys.calls).toBe(1);
    });

    it('shares one in-flight fetch between concurrent first verifies', async () => {
      const release = deferred<JSONWebKeySet>();
      let calls = 0;
      const verifier = verifierFor({
        fetchKeys: () => {
          calls += 1;
          return release.promise;
        },
      });
      const tokens = await Promise.all([signToken({ key: edKey }), signToken({ key: esKey }), signToken({ claims: { sub: '8' } })]);

      const settled = Promise.allSettled(tokens.map((token) => verifier.verify(token)));
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(calls).toBe(1);
      release.resolve(jwksOf(edKey, esKey));

      expect(userIdsOrReasons(await settled)).toEqual([42, 42, 8]);
      expect(calls).toBe(1);
    });

    it('shares one refetch between concurrent verifies of a newly published kid, and all of them verify', async () => {
      const { clock, verifier, counter, answerSecond } = verifierWithSecondFetchHeld();
      await verifier.verify(await signToken({ key: edKey }));
      clock.advance(DEFAULT_MIN_REFETCH_INTERVAL_MS);
      const tokens = await Promise.all([1, 2, 3].map((n) => signToken({ key: esKey, claims: { sub: String(n) } })));

      const settled = Promise.allSettled(tokens.map((token) => verifier.verify(token)));
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(counter.calls).toBe(2);
      answerSecond(jwksOf(edKey, esKey));

      expect(userIdsOrReasons(await settled)).toEqual([1, 2, 3]);
      expect(counter.calls).toBe(2);
    });

    it('lets a verify of a newly published kid use keys refetched while it was under way, however the two interleave', async () => {
      const esTokens = await Promise.all([1, 2].map((n) => signToken({ key: esKey, claims: { sub: String(n) } })));
      for (let ticks = 0; ticks < 40; ticks += 1) {
        const { keys, clock, verifier } = await verifierAfterFirstFetch();
        keys.publish(jwksOf(edKey, esKey));
        clock.advance(DEFAULT_MIN_REFETCH_INTERVAL_MS);

        const first = verifier.verify(esTokens[0] ?? '');
        for (let i = 0; i < ticks; i += 1) await Promise.resolve();
        const second = verifier.verify(esTokens[1] ?? '');

        expect({ ticks, outcomes: userIdsOrReasons(await Promise.allSettled([first, second])) }).toEqual({ ticks, outcomes: [1, 2] });
        expect(keys.calls).toBe(2);
      }
    });

    it('holds back, rather than refuses for good, a new kid missing from keys whose fetch began before the token came', async () => {
      const { clock, verifier, counter, answerSecond } = verifierWithSecondFetchHeld();
      const edToken = await signToken({ key: edKey });
      await verifier.verify(edToken);
      // The keys age out and a verify starts the periodic fetch; the auth service then rotates,
      // and the first token of the new key comes while that fetch is still under way.
      clock.advance(DEFAULT_MAX_KEY_AGE_MS);
      const old = verifier.verify(edToken);
      clock.advance(1);
      // Before: unknown_key, and the gateway closed the socket with 4001 for a genuine token.
      const rotated = expectRefused(verifier.verify(await signToken({ key: esKey })), TokenErrorCode.Unavailable);
      answerSecond(jwksOf(edKey));

      await expect(old).resolves.toMatchObject({ userId: 42 });
      await rotated;
      expect(counter.calls).toBe(2);
    });

    it('with no interval between lookups, refuses for good a kid missing from keys a verify asked for after a fetch it joined', async () => {
      // Auth's own verifier (minRefetchIntervalMs 0): a token of a key never published gets 401,
      // also when it comes while another verify's lookup is under way.
      const { clock, verifier, answerSecond } = verifierWithSecondFetchHeld({ minRefetchIntervalMs: 0 });
      await verifier.verify(await signToken({ key: edKey }));
      const strayToken = await signToken({ key: strayKey });
      const first = expectRefused(verifier.verify(strayToken), TokenErrorCode.UnknownKey);
      await new Promise((resolve) => setTimeout(resolve, 5));
      clock.advance(1);
      const second = expectRefused(verifier.verify(strayToken), TokenErrorCode.UnknownKey);
      await new Promise((resolve) => setTimeout(resolve, 5));
      answerSecond(jwksOf(edKey));
      await Promise.all([first, second]);
    });

    it('lets concurrent verifies of a newly published kid use keys that a sibling refetched a moment earlier', async () => {
      const { keys, clock, verifier } = await verifierAfterFirstFetch();
      keys.publish(jwksOf(edKey, esKey));
      clock.advance(DEFAULT_MIN_REFETCH_INTERVAL_MS);
      const tokens = await Promise.all([1, 2, 3, 4, 5].map((n) => signToken({ key: esKey, claims: { sub: String(n) } })));

      const outcomes = await Promise.allSettled(tokens.map((token) => verifier.verify(token)));

      expect(userIdsOrReasons(outcomes)).toEqual([1, 2, 3, 4, 5]);
      expect(keys.calls).toBe(2);
    });
  });
});
