import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { createSubjects } from '@switchboard/protocol';
import {
  createTestDatabase,
  type ServiceProcess,
  startService,
  TEST_NATS_URL,
  type TestDatabase,
  uniqueSubjectPrefix,
  withPgClient,
} from '@switchboard/testing';
import { createTokenVerifier, requestKeySource, TokenError } from '@switchboard/tokens';
import { decodeProtectedHeader } from 'jose';
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ADMIN = { username: 'root-admin', password: 'correct horse battery staple' };
const API_KEY = 'test-api-key-0123456789';

let database: TestDatabase;
let auth: ServiceProcess;
let nc: NatsConnection;
const prefix = uniqueSubjectPrefix();
const subjects = createSubjects(prefix);

function authEnv(extra: Record<string, string> = {}) {
  return {
    DATABASE_URL: database.url,
    NATS_SUBJECT_PREFIX: prefix,
    ADMIN_USERNAME: ADMIN.username,
    ADMIN_PASSWORD: ADMIN.password,
    AUTH_API_KEYS: `other-key-0123456789,${API_KEY}`,
    LOGIN_MAX_FAILURES: '3',
    LOGIN_MAX_FAILURES_PER_ADDRESS: '1000',
    REGISTRATION_MAX_PER_ADDRESS: '1000',
    ...extra,
  };
}

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(auth.url(path), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
}

async function tokenFor(username: string, password: string): Promise<string> {
  const { status, body } = await post('/v1/token', { username, password });
  expect(status).toBe(200);
  return body.access_token;
}

const verifierOverNats = () =>
  createTokenVerifier({
    keySource: requestKeySource(async (subject, data, timeout) => (await nc.request(subject, data, { timeout })).data, subjects.authJwks),
    issuer: 'switchboard',
    audience: 'switchboard',
  });

beforeAll(async () => {
  database = await createTestDatabase('auth');
  auth = await startService('auth', { env: authEnv() });
  nc = await connect({ servers: TEST_NATS_URL });
});

afterAll(async () => {
  await auth?.stop();
  await nc?.close();
  await database?.drop();
});

/**
 * An auth service of the describe block's own, on its own database (the per-address and per-name
 * counts of every other test would get in the way), behind a proxy on this machine whose
 * X-Forwarded-For it trusts.
 */
function ownAuthBehindProxy(label: string, env: Record<string, string>): { url(path: string): string; databaseUrl(): string } {
  let fresh: TestDatabase | undefined;
  let service: ServiceProcess | undefined;
  beforeAll(async () => {
    fresh = await createTestDatabase(label);
    service = await startService('auth', {
      env: authEnv({ DATABASE_URL: fresh.url, NATS_SUBJECT_PREFIX: uniqueSubjectPrefix(), TRUST_PROXY: 'loopback', ...env }),
    });
  });
  afterAll(async () => {
    await service?.stop();
    await fresh?.drop();
  });
  return {
    url: (path) => {
      if (!service) throw new Error('the service has not started');
      return service.url(path);
    },
    databaseUrl: () => {
      if (!fresh) throw new Error('the database has not been created');
      return fresh.url;
    },
  };
}

describe('POST /v1/users', () => {
  it('creates a customer without a token', async () => {
    const { status, body } = await post('/v1/users', { username: 'alice', password: 'alice-password', display_name: 'Alice' });
    expect(status).toBe(201);
    expect(body).toEqual({ id: expect.any(Number), username: 'alice', role: 'user', display_name: 'Alice' });
    expect(body.id).toBeGreaterThan(0);
  });

  it('counts lengths in characters (code points), as the contract does, not UTF-16 units', async () => {
    // Four emoji are eight UTF-16 units but four characters: fewer than a password's eight; a
    // display name of 100 emoji (200 units) is within its 100.
    expect((await post('/v1/users', { username: 'emoji-short', password: '😀'.repeat(4) })).status).toBe(400);
    expect((await post('/v1/users', { username: 'emoji-long', password: '😀'.repeat(8) })).status).toBe(201);
    const named = await post('/v1/users', { username: 'emoji-name', password: 'a-fine-password', display_name: '😀'.repeat(100) });
    expect(named.status).toBe(201);
    expect((await post('/v1/users', { username: 'emoji-over', password: 'a-fine-password', display_name: '😀'.repeat(101) })).status).toBe(
      400,
    );
  });

  it('refuses a password with a lone surrogate, which would be hashed as another one', async () => {
    const refused = await post('/v1/users', { username: 'lone-surrogate', password: 'password\ud800' });
    // Before: 201, and "password\udfff" or "password\ufffd" logged in as well.
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toMatch(/lone surrogates/);
    expect((await post('/v1/users', { username: 'replacement', password: 'password\ufffd' })).status).toBe(201);
    expect((await post('/v1/token', { username: 'replacement', password: 'password\udfff' })).status).toBe(401);
    expect((await post('/v1/token', { username: 'replacement', password: 'password\ufffd' })).status).toBe(200);
  });

  it('takes optional fields sent as null for ones left out', async () => {
    const { status, body } = await post('/v1/users', { username: 'nully', password: 'nully-password', role: null, display_name: null });
    expect(status).toBe(201);
    expect(body).toEqual({ id: expect.any(Number), username: 'nully', role: 'user', display_name: null });
  });

  it('refuses a username taken in another letter case with 409', async () => {
    const { status, body } = await post('/v1/users', { username: 'ALICE', password: 'another-password' });
    expect(status).toBe(409);
    expect(body.error.code).toBe('username_taken');
  });

  it('refuses an agent without a bearer token with 403', async () => {
    const { status, body } = await post('/v1/users', { username: 'agent-x', password: 'agent-password', role: 'agent' });
    expect(status).toBe(403);
    expect(body.error.code).toBe('forbidden');
  });

  it("refuses an agent created with a customer's token with 403", async () => {
    const token = await tokenFor('alice', 'alice-password');
    const { status } = await post(
      '/v1/users',
      { username: 'agent-x', password: 'agent-password', role: 'agent' },
      { authorization: `Bearer ${token}` },
    );
    expect(status).toBe(403);
  });

  it('refuses an invalid bearer token with 401', async () => {
    const { status, body } = await post(
      '/v1/users',
      { username: 'agent-x', password: 'agent-password', role: 'admin' },
      { authorization: 'Bearer not.a.jwt' },
    );
    expect(status).toBe(401);
    expect(body.error.code).toBe('unauthorized');
  });

  it.each([
    ['an empty bearer token', 'Bearer '],
    ['another scheme', 'Basic YWRtaW46YWRtaW4='],
    ['two words', 'Bearer a b'],
  ])('refuses an Authorization header with %s with 401, creating nothing', async (_label, authorization) => {
    const username = `malformed-${authorization.length}`;
    const refused = await post('/v1/users', { username, password: 'a-fine-password' }, { authorization });
    // Before: taken for no header, a customer's sign-up (201).
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('unauthorized');
    expect((await post('/v1/users', { username, password: 'a-fine-password' })).status).toBe(201);
  });

  it('refuses a token signed by a key it never published with 401, however soon it comes again', async () => {
    // Before, a second one within the verifier's refetch interval got 503 "retry later", and
    // clients that retry on 503 retried for ever.
    const foreign = generateKeyPairSync('ed25519').privateKey;
    const now = Math.floor(Date.now() / 1000);
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const input = `${encode({ alg: 'EdDSA', typ: 'JWT', kid: 'not-a-key-of-ours' })}.${encode({ sub: '1', role: 'admin', username: 'x', iss: 'switchboard', aud: 'switchboard', iat: now, exp: now + 600 })}`;
    const token = `${input}.${sign(null, Buffer.from(input), foreign).toString('base64url')}`;
    const attempt = () =>
      post('/v1/users', { username: 'agent-forged', password: 'agent-password', role: 'agent' }, { authorization: `Bearer ${token}` });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await attempt()).status);
    expect(statuses).toEqual([401, 401, 401]);
  });

  it("creates agents and admins with an admin's token", async () => {
    const token = await tokenFor(ADMIN.username, ADMIN.password);
    for (const role of ['agent', 'admin'] as const) {
      const { status, body } = await post(
        '/v1/users',
        { username: `new-${role}`, password: 'staff-password', role },
        { authorization: `Bearer ${token}` },
      );
      expect(status).toBe(201);
      expect(body.role).toBe(role);
    }
  });

  it.each([
    ['a missing password', { username: 'bob' }, /password is required/],
    ['a short password', { username: 'bob', password: 'short' }, /password/],
    ['a bad username', { username: 'bob smith!', password: 'bob-password' }, /username/],
    ['an unknown role', { username: 'bob', password: 'bob-password', role: 'root' }, /role/],
    ['an unknown field', { username: 'bob', password: 'bob-password', admin: true }, /unknown field/],
    ['a number for username', { username: 42, password: 'bob-password' }, /username/],
    ['an array', [1, 2], /./],
    ['malformed JSON', '{"username": ', /./],
  ])('answers %s with 400 and a message', async (_label, body, message) => {
    const response = await post('/v1/users', body);
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('invalid_body');
    expect(response.body.error.message).toMatch(message);
  });

  it('refuses a body over 16 KiB with 413', async () => {
    const { status, body } = await post('/v1/users', { username: 'big', password: 'x'.repeat(17 * 1024) });
    expect(status).toBe(413);
    expect(body.error.code).toBe('payload_too_large');
  });

  it.each([
    ['application/x-www-form-urlencoded', 'username=bob'],
    // JSON text sent as text/plain (a browser's fetch without a content-type) is no exception.
    ['text/plain', JSON.stringify({ username: 'bob', password: 'bob-password' })],
  ])('refuses a body of %s with 415', async (contentType, text) => {
    const { status, body } = await post('/v1/users', text, { 'content-type': contentType });
    expect(status).toBe(415);
    expect(body.error.code).toBe('unsupported_media_type');
  });
});

describe('PATCH /v1/users/:id', () => {
  let adminToken: string;
  /** `token` null: no Authorization header. */
  const patch = async (id: number | string, body: unknown, token: string | null = adminToken) => {
    const response = await fetch(auth.url(`/v1/users/${id}`), {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
      body: JSON.stringify(body),
    });
    // Parsed as `post` does: read as JSON, whatever its shape.
    return { status: response.status, body: JSON.parse(await response.text()) };
  };
  const staff = async (username: string, role: 'agent' | 'admin' = 'agent') => {
    const created = await post('/v1/users', { username, password: 'staff-password', role }, { authorization: `Bearer ${adminToken}` });
    expect(created.status).toBe(201);
    return created.body.id as number;
  };
  const login = async (username: string, password = 'staff-password') => (await post('/v1/token', { username, password })).status;

  beforeAll(async () => {
    adminToken = await tokenFor(ADMIN.username, ADMIN.password);
  });

  it('disables an agent, who then logs in no more, and enables it again', async () => {
    const id = await staff('leaver');
    expect(await login('leaver')).toBe(200);
    const disabled = await patch(id, { disabled: true });
    expect(disabled).toEqual({ status: 200, body: { id, username: 'leaver', role: 'agent', display_name: null, disabled: true } });
    // The right password is answered as a wrong one.
    const refused = await post('/v1/token', { username: 'leaver', password: 'staff-password' });
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('invalid_credentials');
    expect((await patch(id, { disabled: false })).body.disabled).toBe(false);
    expect(await login('leaver')).toBe(200);
  });

  it('sets a new password, after which only it logs in', async () => {
    const id = await staff('forgetful');
    expect((await patch(id, { password: 'a-new-staff-password' })).status).toBe(200);
    expect(await login('forgetful')).toBe(401);
    expect(await login('forgetful', 'a-new-staff-password')).toBe(200);
  });

  it("demotes an admin, whose token then creates no staff, and a disabled admin's token none either", async () => {
    for (const [username, change] of [
      ['demoted-admin', { role: 'agent' }],
      ['disabled-admin', { disabled: true }],
    ] as const) {
      const id = await staff(username, 'admin');
      const token = await tokenFor(username, 'staff-password');
      expect(
        (
          await post(
            '/v1/users',
            { username: `${username}-made`, password: 'staff-password', role: 'agent' },
            { authorization: `Bearer ${token}` },
          )
        ).status,
      ).toBe(201);
      expect((await patch(id, change)).status).toBe(200);
      const refused = await post(
        '/v1/users',
        { username: `${username}-after`, password: 'staff-password', role: 'agent' },
        { authorization: `Bearer ${token}` },
      );
      expect(refused.status).toBe(403);
      expect((await patch(id, { display_name: 'x' }, token)).status).toBe(403);
    }
  });

  it('changes a display name, and leaves what it is not given', async () => {
    const id = await staff('renamed');
    expect((await patch(id, { display_name: '  Renée  ' })).body).toEqual({
      id,
      username: 'renamed',
      role: 'agent',
      display_name: 'Renée',
      disabled: false,
    });
    expect(await login('renamed')).toBe(200);
  });

  it('leaves one of two admins who disable each other at once', async () => {
    for (let round = 0; round < 5; round++) {
      const ids = [await staff(`rival-a-${round}`, 'admin'), await staff(`rival-b-${round}`, 'admin')] as const;
      const tokens = [await tokenFor(`rival-a-${round}`, 'staff-password'), await tokenFor(`rival-b-${round}`, 'staff-password')];
      const outcomes = await Promise.all([patch(ids[1], { disabled: true }, tokens[0]), patch(ids[0], { disabled: true }, tokens[1])]);
      // Before: both 200, and neither could administer any more.
      expect(outcomes.map((outcome) => outcome.status).sort()).toEqual([200, 403]);
      const enabled = await Promise.all(ids.map(async (id) => (await patch(id, { display_name: 'still here?' })).body.disabled));
      expect(enabled.filter((disabled) => disabled === false)).toHaveLength(1);
    }
  });

  it("leaves the bootstrap admin's role, state and password to ADMIN_USERNAME and ADMIN_PASSWORD", async () => {
    const other = await staff('second-admin', 'admin');
    expect(other).toBeGreaterThan(0);
    const otherToken = await tokenFor('second-admin', 'staff-password');
    const bootstrap = (await post('/v1/token', ADMIN)).body.user.id as number;
    // Before: 200, and the next start refused to run, the name held by an agent.
    for (const change of [{ role: 'agent' }, { disabled: true }, { password: 'another-password' }]) {
      const refused = await patch(bootstrap, change, otherToken);
      expect(refused.status, JSON.stringify(change)).toBe(400);
      expect(refused.body.error.message).toMatch(/ADMIN_USERNAME/);
    }
    expect((await patch(bootstrap, { display_name: 'The operator' }, otherToken)).status).toBe(200);
    expect((await post('/v1/token', ADMIN)).status).toBe(200);
  });

  it('refuses an admin disabling or demoting their own account, so that one admin always remains', async () => {
    const me = (await post('/v1/token', ADMIN)).body.user.id as number;
    for (const change of [{ disabled: true }, { role: 'agent' }]) {
      const refused = await patch(me, change);
      expect(refused.status).toBe(400);
      expect(refused.body.error.message).toMatch(/own account/);
    }
    expect((await patch(me, { display_name: 'Root' })).status).toBe(200);
  });

  it("leaves a service user's role and password to its backend, and refuses it tokens once disabled", async () => {
    const minted = await post('/v1/service-token', { external_id: 'crm-leaver', role: 'agent' }, { authorization: `Bearer ${API_KEY}` });
    const id = minted.body.user.id as number;
    expect((await patch(id, { role: 'admin' })).status).toBe(400);
    expect((await patch(id, { password: 'a-fine-password' })).status).toBe(400);
    expect((await patch(id, { disabled: true })).status).toBe(200);
    const refused = await post('/v1/service-token', { external_id: 'crm-leaver', role: 'agent' }, { authorization: `Bearer ${API_KEY}` });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toEqual({ code: 'forbidden', message: 'this user is disabled' });
  });

  it('answers no token 401, a non-admin 403, an unknown user 404 and a bad body or id 400', async () => {
    const id = await staff('untouched');
    expect((await patch(id, { disabled: true }, null)).status).toBe(401);
    expect((await patch(id, { disabled: true }, 'not-a-token')).status).toBe(401);
    expect((await patch(id, { disabled: true }, await tokenFor('untouched', 'staff-password'))).status).toBe(403);
    const unknown = await patch(999_999_999, { disabled: true });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('not_found');
    for (const body of [{}, { disabled: 'yes' }, { role: 'root' }, { password: 'short' }, { username: 'renamed' }])
      expect((await patch(id, body)).status, JSON.stringify(body)).toBe(400);
    for (const bad of ['abc', '0', '1.5', '0x1F', '1e3', '%207%20', '-3'])
      expect((await patch(bad, { disabled: true })).status, bad).toBe(400);
    expect(await login('untouched')).toBe(200);
  });
});

describe('POST /v1/token', () => {
  it('answers a token that no cache may keep', async () => {
    const login = await post('/v1/token', ADMIN);
    expect(login.status).toBe(200);
    expect(login.headers.get('cache-control')).toBe('no-store');
    const minted = await post('/v1/service-token', { external_id: 'crm-no-store', role: 'user' }, { authorization: `Bearer ${API_KEY}` });
    expect(minted.status).toBe(200);
    expect(minted.headers.get('cache-control')).toBe('no-store');
  });

  it('issues a bearer token carrying the contract claims', async () => {
    const { status, body } = await post('/v1/token', { username: 'Alice', password: 'alice-password' });
    expect(status).toBe(200);
    expect(body).toMatchObject({
      token_type: 'Bearer',
      expires_in: 3600,
      user: { id: expect.any(Number), username: 'alice', role: 'user' },
    });
    const header = decodeProtectedHeader(body.access_token);
    expect(header.alg).toBe('EdDSA');
    expect(header.kid).toEqual(expect.any(String));
    const claims = JSON.parse(Buffer.from(body.access_token.split('.')[1], 'base64url').toString());
    expect(claims).toMatchObject({ sub: String(body.user.id), role: 'user', username: 'alice', iss: 'switchboard', aud: 'switchboard' });
    expect(claims.exp - claims.iat).toBe(3600);
  });

  it('answers an unknown user and a wrong password alike with 401', async () => {
    const unknown = await post('/v1/token', { username: 'nobody-here', password: 'whatever-password' });
    const wrong = await post('/v1/token', { username: 'alice', password: 'wrong-password' });
    expect(unknown.status).toBe(401);
    expect(wrong.status).toBe(401);
    expect(unknown.body).toEqual(wrong.body);
  });

  it('throttles repeated failed logins with 429 and Retry-After', async () => {
    await post('/v1/users', { username: 'carol', password: 'carol-password' });
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 4; attempt++)
      statuses.push((await post('/v1/token', { username: 'carol', password: 'nope-nope' })).status);
    expect(statuses).toEqual([401, 401, 401, 429]);
    const blocked = await post('/v1/token', { username: 'carol', password: 'carol-password' });
    expect(blocked.status).toBe(429);
    expect(blocked.body.error.code).toBe('too_many_requests');
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('lets no more than LOGIN_MAX_FAILURES of many concurrent wrong passwords be tried', async () => {
    await post('/v1/users', { username: 'erin', password: 'erin-password' });
    const statuses = await Promise.all(
      Array.from({ length: 20 }, async () => (await post('/v1/token', { username: 'erin', password: 'nope-nope' })).status),
    );
    expect(statuses.filter((status) => status === 401)).toHaveLength(3);
    expect(statuses.filter((status) => status === 429)).toHaveLength(17);
    expect((await post('/v1/token', { username: 'erin', password: 'erin-password' })).status).toBe(429);
  });

  it('throttles across replicas: failures on one count on every other', async () => {
    await post('/v1/users', { username: 'dave', password: 'dave-password' });
    const second = await startService('auth', { env: authEnv() });
    const login = async (replica: ServiceProcess, password: string) =>
      (
        await fetch(replica.url('/v1/token'), {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username: 'dave', password }),
        })
      ).status;
    try {
      const statuses: number[] = [];
      for (const replica of [auth, second, auth]) statuses.push(await login(replica, 'nope-nope'));
      expect(statuses).toEqual([401, 401, 401]);
      // Three failures in all, though neither replica saw three itself: both refuse now.
      expect(await login(auth, 'dave-password')).toBe(429);
      expect(await login(second, 'dave-password')).toBe(429);
    } finally {
      await second.stop();
    }
  });
});

describe('POST /v1/token per username and client address', () => {
  const service = ownAuthBehindProxy('auth_accounts', { LOGIN_MAX_FAILURES_PER_USERNAME: '7' });
  const login = async (address: string, password: string) =>
    (
      await fetch(service.url('/v1/token'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
        body: JSON.stringify({ username: ADMIN.username, password }),
      })
    ).status;

  it('locks a name out from the guessing address only, so that its owner still logs in elsewhere', async () => {
    const guesses = [];
    for (let i = 0; i < 4; i++) guesses.push(await login('10.2.0.1', 'nope-nope'));
    expect(guesses).toEqual([401, 401, 401, 429]);
    expect(await login('10.2.0.1', ADMIN.password)).toBe(429);
    expect(await login('10.2.0.2', ADMIN.password)).toBe(200);
  });

  it('locks the name everywhere once guesses from all addresses pass LOGIN_MAX_FAILURES_PER_USERNAME', async () => {
    // Three failures so far (the test above); four more from two other addresses make seven.
    const guesses = [];
    for (const address of ['10.2.0.3', '10.2.0.3', '10.2.0.4', '10.2.0.4', '10.2.0.4']) guesses.push(await login(address, 'nope-nope'));
    expect(guesses).toEqual([401, 401, 401, 401, 429]);
    expect(await login('10.2.0.5', ADMIN.password)).toBe(429);
  });
});

describe('POST /v1/users per client address', () => {
  const service = ownAuthBehindProxy('auth_registrations', { REGISTRATION_MAX_PER_ADDRESS: '3' });
  const register = async (address: string, username: string, headers: Record<string, string> = {}) => {
    const response = await fetch(service.url('/v1/users'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': address, ...headers },
      body: JSON.stringify({ username, password: 'a-fine-password', ...(headers.authorization ? { role: 'agent' } : {}) }),
    });
    return { status: response.status, retryAfter: response.headers.get('retry-after') };
  };

  it('refuses an address over its limit of sign-ups with 429, taken usernames included, and no other address', async () => {
    const statuses = [];
    for (const name of ['reg-a', 'reg-a', 'reg-b', 'reg-c', 'reg-d']) statuses.push((await register('10.1.0.1', name)).status);
    expect(statuses).toEqual([201, 409, 201, 429, 429]);
    const refused = await register('10.1.0.1', 'reg-e');
    expect(refused.status).toBe(429);
    expect(Number(refused.retryAfter)).toBeGreaterThan(0);
    expect((await register('10.1.0.2', 'reg-f')).status).toBe(201);
  });

  it('counts an IPv6 client by its /64, and an IPv4-mapped address as the IPv4 one', async () => {
    const statuses = [];
    for (const [address, name] of [
      ['2001:db8:7:7::1', 'reg6-a'],
      ['2001:db8:7:7::2', 'reg6-b'],
      ['2001:db8:7:7:ffff::3', 'reg6-c'],
      ['2001:db8:7:7::4', 'reg6-d'],
    ]) {
      statuses.push((await register(address ?? '', name ?? '')).status);
    }
    expect(statuses).toEqual([201, 201, 201, 429]);
    expect((await register('2001:db8:7:8::1', 'reg6-e')).status).toBe(201);
    for (const name of ['reg4-a', 'reg4-b', 'reg4-c']) expect((await register('10.1.0.9', name)).status).toBe(201);
    expect((await register('::ffff:10.1.0.9', 'reg4-d')).status).toBe(429);
  });

  it('does not count an admin creating staff, or customers: that is not a sign-up', async () => {
    const login = await fetch(service.url('/v1/token'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(ADMIN),
    });
    const { access_token: token } = (await login.json()) as { access_token: string };
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await register('10.1.0.3', `staff-${i}`, { authorization: `Bearer ${token}` })).status);
    expect(statuses).toEqual([201, 201, 201, 201, 201]);
    const customer = async (address: string, username: string, bearer: string) =>
      (
        await fetch(service.url('/v1/users'), {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': address, authorization: `Bearer ${bearer}` },
          body: JSON.stringify({ username, password: 'a-fine-password' }),
        })
      ).status;
    const customers = [];
    for (let i = 0; i < 5; i++) customers.push(await customer('10.1.0.4', `customer-by-admin-${i}`, token));
    expect(customers).toEqual([201, 201, 201, 201, 201]);
    // A bearer token that is not an admin's leaves a sign-up counted as one.
    const customerLogin = await fetch(service.url('/v1/token'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'customer-by-admin-0', password: 'a-fine-password' }),
    });
    const { access_token: customerToken } = (await customerLogin.json()) as { access_token: string };
    const signUps = [];
    for (let i = 0; i < 4; i++) signUps.push(await customer('10.1.0.5', `with-a-customer-token-${i}`, customerToken));
    expect(signUps).toEqual([201, 201, 201, 429]);
  });

  it('refuses a customer sign-up whose bearer token does not verify with 401, counting nothing', async () => {
    const signUp = (username: string, bearer?: string) =>
      fetch(service.url('/v1/users'), {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-forwarded-for': '10.1.0.6',
          ...(bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }),
        },
        body: JSON.stringify({ username, password: 'a-fine-password' }),
      });
    const refused = await signUp('with-a-bad-token', 'not-a-token');
    // Before: 201, a sign-up like any other, and counted as one.
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await signUp(`after-a-bad-token-${i}`)).status);
    expect(statuses).toEqual([201, 201, 201, 429]);
  });

  it('does not count a sign-up the database failed, answered 503 to be retried', async () => {
    // The database refuses to store users as a full disk would (53100): a passing failure, 503.
    const refuseUsers = async (refusing: boolean) =>
      withPgClient(service.databaseUrl(), async (db) => {
        await db.query(
          refusing
            ? `create function refuse_users() returns trigger language plpgsql as $$ begin raise exception 'no room' using errcode = '53100'; end $$;
               create trigger refuse_users before insert on users for each row execute function refuse_users()`
            : 'drop trigger refuse_users on users; drop function refuse_users()',
        );
      });
    await refuseUsers(true);
    const failed = [];
    try {
      for (let i = 0; i < 4; i++) failed.push((await register('10.1.0.7', `while-failing-${i}`)).status);
    } finally {
      await refuseUsers(false);
    }
    expect(failed).toEqual([503, 503, 503, 503]);
    // Before: each 503 counted, and the retries the 503s asked for were refused 429.
    const retried = [];
    for (let i = 0; i < 4; i++) retried.push((await register('10.1.0.7', `while-failing-${i}`)).status);
    expect(retried).toEqual([201, 201, 201, 429]);
  });
});

describe('password checks at once', () => {
  const service = ownAuthBehindProxy('auth_busy', { PASSWORD_HASH_CONCURRENCY: '1', PASSWORD_HASH_QUEUE: '1' });
  // Each request from an address of its own: the throttles refuse more than LOGIN_MAX_FAILURES
  // attempts in flight at once for one name from one address.
  let address = 0;
  const post = async (path: string, body: unknown) => {
    const response = await fetch(service.url(path), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': `10.3.0.${++address}` },
      body: JSON.stringify(body),
    });
    return { status: response.status, retryAfter: response.headers.get('retry-after') };
  };

  it('answers logins and sign-ups beyond those waiting with 503 and Retry-After, costing them no attempt', async () => {
    expect((await post('/v1/users', { username: 'busy-user', password: 'busy-password' })).status).toBe(201);
    const burst = await Promise.all(
      Array.from({ length: 12 }, () => post('/v1/token', { username: 'busy-user', password: 'busy-password' })),
    );
    const statuses = burst.map((outcome) => outcome.status);
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThanOrEqual(2);
    expect(statuses.filter((status) => status === 503).length).toBeGreaterThan(0);
    expect(statuses.every((status) => status === 200 || status === 503)).toBe(true);
    for (const outcome of burst.filter((each) => each.status === 503)) expect(outcome.retryAfter).toBe('1');

    const signUps = await Promise.all(
      Array.from({ length: 6 }, (_, i) => post('/v1/users', { username: `busy-signup-${i}`, password: 'busy-password' })),
    );
    expect(signUps.some((outcome) => outcome.status === 503)).toBe(true);
    expect(signUps.every((outcome) => outcome.status === 201 || outcome.status === 503)).toBe(true);

    // Once the burst is over, one at a time goes through; the refused ones counted against nothing.
    expect((await post('/v1/token', { username: 'busy-user', password: 'busy-password' })).status).toBe(200);
  });
});

describe('POST /v1/token per client address', () => {
  const service = ownAuthBehindProxy('auth_addresses', { LOGIN_MAX_FAILURES_PER_ADDRESS: '2' });
  const login = async (address: string, username: string, password: string) =>
    (
      await fetch(service.url('/v1/token'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
        body: JSON.stringify({ username, password }),
      })
    ).status;

  it('never refuses an address for its successful logins, however many', async () => {
    for (let i = 0; i < 6; i++) expect(await login('10.0.0.1', ADMIN.username, ADMIN.password)).toBe(200);
  });

  it("refuses an address over its limit without counting the refused attempts against the users' names", async () => {
    expect([await login('10.0.0.2', 'nobody-1', 'nope-nope'), await login('10.0.0.2', 'nobody-2', 'nope-nope')]).toEqual([401, 401]);
    for (let i = 0; i < 5; i++) expect(await login('10.0.0.2', ADMIN.username, 'nope-nope')).toBe(429);
    expect(await login('10.0.0.3', ADMIN.username, ADMIN.password)).toBe(200);
  });

  it('takes the address the proxy saw, not one the client wrote before it in X-Forwarded-For', async () => {
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push(await login(`198.51.100.${i}, 10.0.0.4`, `nobody-${i}`, 'nope-nope'));
    expect(statuses).toEqual([401, 401, 429]);
  });

  it('refuses an address known to be over its limit without a statement, however busy the database', async () => {
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push(await login('10.0.0.9', `nobody-${i}`, 'nope-nope'));
    expect(statuses).toEqual([401, 401, 429]);
    // Every statement on login_failures now waits for the lock. Before, each refused request
    // still counted and forgave its keys there: it waited, then got 503 at the 10 s query timeout.
    const locker = new pg.Client({ connectionString: service.databaseUrl() });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table login_failures in access exclusive mode');
      const refused = await Promise.race([
        login('10.0.0.9', 'nobody-3', 'nope-nope'),
        new Promise<string>((resolve) => setTimeout(() => resolve('still waiting after 3 s'), 3_000)),
      ]);
      expect(refused).toBe(429);
    } finally {
      await locker.query('rollback');
      await locker.end();
    }
  });

  it('counts an address the proxy wrote with a port under the address, whatever the port', async () => {
    // Before, "10.0.0.5:40001" and "10.0.0.5:40002" were two addresses: a fresh count per connection.
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push(await login(`10.0.0.5:4000${i}`, `nobody-${i}`, 'nope-nope'));
    statuses.push(await login('10.0.0.5', 'nobody-3', 'nope-nope'));
    expect(statuses).toEqual([401, 401, 429, 429]);
  });
});

describe('POST /v1/token: successful logins per username', () => {
  const service = ownAuthBehindProxy('auth_successes', { LOGIN_MAX_SUCCESSES_PER_USERNAME: '3' });
  const login = async (address: string, username: string, password: string) => {
    const response = await fetch(service.url('/v1/token'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
      body: JSON.stringify({ username, password }),
    });
    const body = (await response.json()) as { error?: { code: string; message: string } };
    return { status: response.status, retryAfter: response.headers.get('retry-after'), error: body.error };
  };
  const signUp = async (username: string) => {
    const response = await fetch(service.url('/v1/users'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '10.4.0.99' },
      body: JSON.stringify({ username, password: 'a-fine-password' }),
    });
    expect(response.status).toBe(201);
  };

  it('refuses a name past LOGIN_MAX_SUCCESSES_PER_USERNAME from every address, and no other name', async () => {
    await signUp('looping');
    await signUp('bystander');
    // Failures are the failure limits' business: they leave the successes' count as it was.
    for (const address of ['10.4.0.1', '10.4.0.2']) expect((await login(address, 'looping', 'nope-nope')).status).toBe(401);
    const statuses = [];
    for (const address of ['10.4.0.1', '10.4.0.2', '10.4.0.3']) statuses.push((await login(address, 'Looping', 'a-fine-password')).status);
    expect(statuses).toEqual([200, 200, 200]);
    const refused = await login('10.4.0.4', 'looping', 'a-fine-password');
    expect(refused.status).toBe(429);
    expect(refused.error).toEqual({ code: 'too_many_requests', message: 'too many logins; try again later' });
    expect(Number(refused.retryAfter)).toBeGreaterThan(0);
    expect((await login('10.4.0.4', 'bystander', 'a-fine-password')).status).toBe(200);
  });

  it('lets no more than the limit of a concurrent burst of correct passwords be checked', async () => {
    await signUp('bursting');
    const statuses = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => (await login(`10.4.1.${i}`, 'bursting', 'a-fine-password')).status),
    );
    expect(statuses.filter((status) => status === 200)).toHaveLength(3);
    expect(statuses.filter((status) => status === 429)).toHaveLength(9);
  });
});

describe('POST /v1/token while the database fails the lookup', () => {
  const service = ownAuthBehindProxy('auth_lookup_fails', { LOGIN_MAX_FAILURES: '1' });
  const login = async (address = '10.5.0.1') =>
    (
      await fetch(service.url('/v1/token'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
        body: JSON.stringify(ADMIN),
      })
    ).status;

  it('counts a login whose password was never checked against no key', async () => {
    const db = new pg.Client({ connectionString: service.databaseUrl() });
    await db.connect();
    try {
      // The users table away for a moment: the lookup fails after the attempt was counted.
      await db.query('alter table users rename to users_away');
      try {
        expect(await login()).toBeGreaterThanOrEqual(500);
      } finally {
        await db.query('alter table users_away rename to users');
      }
    } finally {
      await db.end();
    }
    // One failure allowed from this address: the failed lookup did not use it up (before, 429).
    expect(await login()).toBe(200);
  });

  it('takes back the counts made when another of them fails', async () => {
    const db = new pg.Client({ connectionString: service.databaseUrl() });
    await db.connect();
    // The throttles store each key hashed with its scope: this is the address's.
    const addressKey = createHash('sha256').update('address').update('\u0000').update('10.5.0.2').digest('base64url');
    try {
      await db.query("create function refuse_count() returns trigger language plpgsql as $$ begin raise exception 'refused'; end $$");
      await db.query(
        `create trigger refuse_count before insert or update on login_failures for each row when (new.key = '${addressKey}') execute function refuse_count()`,
      );
      try {
        expect(await login('10.5.0.2')).toBeGreaterThanOrEqual(500);
      } finally {
        await db.query('drop trigger refuse_count on login_failures');
        await db.query('drop function refuse_count()');
      }
    } finally {
      await db.end();
    }
    // The name's count from this address was taken back (before, kept: 429).
    expect(await login('10.5.0.2')).toBe(200);
  });
});

describe('POST /v1/service-token', () => {
  const call = (body: unknown, key: string | null = API_KEY) =>
    post('/v1/service-token', body, key === null ? {} : { authorization: `Bearer ${key}` });

  it('refuses a missing or wrong API key with 401', async () => {
    expect((await call({ external_id: 'crm-1', role: 'user' }, null)).status).toBe(401);
    expect((await call({ external_id: 'crm-1', role: 'user' }, 'wrong-key')).status).toBe(401);
  });

  it('refuses a caller without the API key before reading the body, so it learns nothing of the schema', async () => {
    const refused = await call({ role: 'owner' }, null);
    expect(refused.status).toBe(401);
    expect(JSON.stringify(refused.body)).not.toMatch(/external_id|owner/);
    expect((await call({ role: 'owner' }, 'wrong-key')).status).toBe(401);
  });

  it('creates the user on first use and maps the same external_id to the same user', async () => {
    const first = await call({ external_id: 'crm-1', role: 'user', display_name: 'Dana' });
    const again = await call({ external_id: 'crm-1', role: 'user', display_name: null });
    const other = await call({ external_id: 'CRM-1', role: 'agent' });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ token_type: 'Bearer', user: { role: 'user' } });
    expect(again.body.user.id).toBe(first.body.user.id);
    expect(other.body.user.id).not.toBe(first.body.user.id);
    expect(other.body.user.role).toBe('agent');
    expect(await verifierOverNats().verify(first.body.access_token)).toMatchObject({ userId: first.body.user.id, role: 'user' });
  });

  it("stops an admin's token from creating staff once the user is minted again with another role", async () => {
    const admin = await call({ external_id: 'crm-demoted', role: 'admin' });
    const createAgent = (username: string) =>
      post('/v1/users', { username, password: 'agent-password', role: 'agent' }, { authorization: `Bearer ${admin.body.access_token}` });
    expect((await createAgent('made-by-crm-admin')).status).toBe(201);
    expect((await call({ external_id: 'crm-demoted', role: 'user' })).body.user.role).toBe('user');
    const refused = await createAgent('made-after-demotion');
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('forbidden');
  });

  it('answers an invalid body with 400', async () => {
    expect((await call({ external_id: 'x'.repeat(129), role: 'user' })).status).toBe(400);
    // 128 characters, 256 UTF-16 units: within the contract's 128.
    expect((await call({ external_id: '😀'.repeat(128), role: 'user' })).status).toBe(200);
    expect((await call({ external_id: '😀'.repeat(129), role: 'user' })).status).toBe(400);
    expect((await call({ external_id: 'crm-2', role: 'owner' })).status).toBe(400);
    expect((await call({ role: 'user' })).status).toBe(400);
  });
});

describe('keys', () => {
  it('serves the JWKS over HTTP and over NATS alike', async () => {
    const http = (await (await fetch(auth.url('/.well-known/jwks.json'))).json()) as { keys: Record<string, unknown>[] };
    const overNats = (await nc.request(subjects.authJwks, new Uint8Array(), { timeout: 2000 })).json();
    expect(http).toEqual(overNats);
    expect(http.keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid: expect.any(String) });
    expect(http.keys[0]).not.toHaveProperty('d');
  });

  it('registers with the NATS services framework', async () => {
    const client = nc.services.client();
    const pings = [];
    for await (const ping of await client.ping(subjects.authServiceName)) pings.push(ping);
    expect(pings).toHaveLength(1);
    const infos = [];
    for await (const info of await client.info(subjects.authServiceName)) infos.push(info);
    expect(infos[0]?.endpoints.map((endpoint) => endpoint.subject)).toContain(subjects.authJwks);
  });

  it('issues tokens that the verification library accepts with keys fetched over NATS', async () => {
    const token = await tokenFor('alice', 'alice-password');
    const verified = await verifierOverNats().verify(token);
    expect(verified).toMatchObject({ role: 'user', username: 'alice', userId: expect.any(Number) });
    expect(verified.expiresAt).toBeGreaterThan(Date.now());
  });

  it('keeps tokens valid across a restart of the service', async () => {
    const token = await tokenFor('alice', 'alice-password');
    expect(await auth.stop()).toBe(0);
    auth = await startService('auth', { env: authEnv() });
    await expect(verifierOverNats().verify(token)).resolves.toMatchObject({ username: 'alice' });
    const after = await tokenFor('alice', 'alice-password');
    expect(decodeProtectedHeader(after).kid).toBe(decodeProtectedHeader(token).kid);
  });
});

describe('ops endpoints', () => {
  it('serves healthz, readyz and metrics that count logins', async () => {
    expect((await fetch(auth.opsUrl('/healthz'))).status).toBe(200);
    // Also on the API's own port, for load balancers that health-check the port they send to.
    expect((await fetch(auth.url('/healthz'))).status).toBe(200);
    const ready = await fetch(auth.opsUrl('/readyz'));
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { bus: true, database: true, accepting: true } });
    await tokenFor('alice', 'alice-password');
    const metrics = await (await fetch(auth.opsUrl('/metrics'))).text();
    expect(metrics).toMatch(/switchboard_auth_logins_total\{outcome="success",service="auth"\} [1-9]/);
    expect(metrics).toMatch(/process_cpu_user_seconds_total/);
  });

  it('never writes a password or a token to its log', async () => {
    const token = await tokenFor('alice', 'alice-password');
    await post('/v1/users', { username: 'agent-z', password: 'agent-password', role: 'agent' }, { authorization: `Bearer ${token}` });
    const logs = auth.logs.join('\n');
    for (const secret of ['alice-password', ADMIN.password, API_KEY, token]) expect(logs).not.toContain(secret);
  });
});

describe('start-up', () => {
  it('lets replicas starting together on a fresh database agree on one signing key', async () => {
    const fresh = await createTestDatabase('auth_replicas');
    const replicaEnv = { DATABASE_URL: fresh.url, NATS_SUBJECT_PREFIX: uniqueSubjectPrefix() };
    const replicas = await Promise.all([startService('auth', { env: replicaEnv }), startService('auth', { env: replicaEnv })]);
    try {
      const [a, b] = (await Promise.all(replicas.map(async (replica) => (await fetch(replica.url('/.well-known/jwks.json'))).json()))) as {
        keys: unknown[];
      }[];
      expect(a?.keys).toHaveLength(1);
      expect(b).toEqual(a);
    } finally {
      await Promise.all(replicas.map((replica) => replica.stop()));
      await fresh.drop();
    }
  });

  it('signs with JWT_PRIVATE_KEY when it is set', async () => {
    const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const fresh = await createTestDatabase('auth_pem');
    const service = await startService('auth', {
      env: {
        DATABASE_URL: fresh.url,
        NATS_SUBJECT_PREFIX: uniqueSubjectPrefix(),
        JWT_PRIVATE_KEY: pem,
        ADMIN_USERNAME: 'boss',
        ADMIN_PASSWORD: 'boss-password',
      },
    });
    try {
      const response = await fetch(service.url('/v1/token'), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'boss', password: 'boss-password' }),
      });
      const { access_token: token } = (await response.json()) as { access_token: string };
      expect(decodeProtectedHeader(token).alg).toBe('ES256');
      const jwks = (await (await fetch(service.url('/.well-known/jwks.json'))).json()) as { keys: unknown[] };
      expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', kid: decodeProtectedHeader(token).kid });
    } finally {
      await service.stop();
      await fresh.drop();
    }
  });

  it('refuses to start with a message naming the bad variable', async () => {
    const service = await startService('auth', {
      env: { DATABASE_URL: database.url, ACCESS_TOKEN_TTL: 'soon', LOG_LEVEL: 'loud' },
      waitReady: false,
    });
    expect(await service.exited).toBe(1);
    const output = service.logs.join('\n');
    expect(output).toMatch(/ACCESS_TOKEN_TTL/);
    expect(output).toMatch(/LOG_LEVEL/);
  });

  it('exits 0 on SIGTERM', async () => {
    const service = await startService('auth', { env: { DATABASE_URL: database.url, NATS_SUBJECT_PREFIX: uniqueSubjectPrefix() } });
    expect(await service.stop()).toBe(0);
  });
});

it('reports verification failures as TokenError', async () => {
  await expect(verifierOverNats().verify('abc.def.ghi')).rejects.toBeInstanceOf(TokenError);
});
