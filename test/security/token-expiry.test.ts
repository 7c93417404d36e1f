/**
 * Tokens that expire while their socket is open (docs/protocol.md, "Staying authenticated"): the
 * socket gets `auth_failed` and close 4001 once the token's `exp` (plus the clock tolerance the
 * verifier also grants) has passed, unless the client re-sent `auth` with a fresh token before
 * then. The short-lived tokens come from a second auth process on the same database and subjects
 * with `ACCESS_TOKEN_TTL=2`, so they are issued exactly as in production. The cases wait for real
 * expiries, so they run concurrently.
 */
import { type ServiceProcess, type Stack, startService, startStack } from '@switchboard/testing';
import { DEFAULT_CLOCK_TOLERANCE_S } from '@switchboard/tokens';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessClaims, authenticate, decodeClaims, type Ed25519Key, ed25519Key, expectPong, signEdDSA, sleep } from './helpers.js';

let stack: Stack;
let shortAuth: ServiceProcess;
let key: Ed25519Key;
const PASSWORD = 'expiry-customer-password';
let customer: { id: number; username: string };

async function login(service: ServiceProcess, username: string, password = PASSWORD): Promise<string> {
  const response = await fetch(service.url('/v1/token'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { access_token: string }).access_token;
}

/** How late after `closesAt` a close may come on a busy machine: seconds, against the hour of another token. */
const LATE_CLOSE_MS = 5_000;

/** When the gateway ends a socket authenticated with this token: at `exp` plus the verifier's clock tolerance. */
const closesAt = (token: string) => ((decodeClaims(token).exp as number) + DEFAULT_CLOCK_TOLERANCE_S) * 1000;
const msUntilClose = (token: string) => closesAt(token) - Date.now();

beforeAll(async () => {
  key = await ed25519Key();
  stack = await startStack({ env: { JWT_PRIVATE_KEY: key.pem } });
  shortAuth = await startService('auth', { env: { ...stack.env, ACCESS_TOKEN_TTL: '2' } });
  const username = `expiry-${process.pid}`;
  const created = await fetch(stack.auth.url('/v1/users'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD }),
  });
  customer = { id: ((await created.json()) as { id: number }).id, username };
});

afterAll(async () => {
  await shortAuth?.stop();
  await stack?.stop();
});

describe.concurrent('a token expiring on an open socket', () => {
  it('gets auth_failed and close 4001 once exp and the clock tolerance have passed, not before', async () => {
    const token = await login(shortAuth, customer.username);
    expect(decodeClaims(token).exp).toBe((decodeClaims(token).iat as number) + 2);
    const { client, reply } = await authenticate(stack.wsUrl(), token);
    expect(reply.type).toBe('auth_success');
    await expectPong(client);

    expect(await client.closed).toBe(4001);
    const closedAt = Date.now();
    expect(closedAt).toBeGreaterThanOrEqual(closesAt(token) - 50);
    // Soon after, by the gateway's expiry tick (250 ms): the bound is wide, for a loaded machine,
    // and still tells a close at the expiry from none, or from a later token's.
    expect(closedAt).toBeLessThan(closesAt(token) + LATE_CLOSE_MS);
    expect(client.frames.at(-1)).toMatchObject({ type: 'error', code: 'auth_failed', message: expect.stringMatching(/expired/) });
    expect(client.frames.at(-1)).not.toHaveProperty('req_id');
  });

  it('stays open past the first expiry when the client re-authenticates with a fresh token first', async () => {
    const shortToken = await login(shortAuth, customer.username);
    const { client, reply } = await authenticate(stack.wsUrl(), shortToken);
    expect(reply.type).toBe('auth_success');
    const session = ((await client.request({ type: 'create_session', subject: 'expiry' })).session as { id: number }).id;
    expect((await client.request({ type: 'join_session', session_id: session })).type).toBe('joined_session');

    // A fresh token from the regular auth service (1 h), taken now (a login on a busy machine can
    // take longer than the second left), sent a second before the short one's socket would end.
    const fresh = await login(stack.auth, customer.username);
    await sleep(Math.max(0, msUntilClose(shortToken) - 1_000));
    expect(await client.request({ type: 'auth', token: fresh })).toMatchObject({ type: 'auth_success', user: { id: customer.id } });

    await sleep(msUntilClose(shortToken) + 1_500);
    expect(client.closeCode).toBeUndefined();
    expect(client.frames.filter((frame) => frame.type === 'error')).toEqual([]);
    // The joined session survived the re-auth.
    expect(
      (await client.request({ type: 'send_message', session_id: session, content: 'still here', client_msg_id: 'after-expiry' })).type,
    ).toBe('message_ack');
    await client.waitFor((frame) => frame.type === 'new_message');
    await client.close();
  });

  it('closes at the later expiry when the replacement token is itself short-lived', async () => {
    const first = await login(shortAuth, customer.username);
    const { client } = await authenticate(stack.wsUrl(), first);
    // Wait until the first token's exp has passed: the socket lives on in its tolerance, and a new token moves the end.
    await sleep(Math.max(0, msUntilClose(first) - 3_000));
    const second = await login(shortAuth, customer.username);
    expect(closesAt(second)).toBeGreaterThan(closesAt(first));
    expect((await client.request({ type: 'auth', token: second })).type).toBe('auth_success');
    expect(await client.closed).toBe(4001);
    expect(Date.now()).toBeGreaterThanOrEqual(closesAt(second) - 50);
  });

  it('refuses a re-auth as another user with forbidden and keeps the old identity and its expiry', async () => {
    const token = await login(shortAuth, customer.username);
    const { client } = await authenticate(stack.wsUrl(), token);
    const other = await stack.user('user');
    expect(await client.request({ type: 'auth', token: other.token })).toMatchObject({ type: 'error', code: 'forbidden' });
    await expectPong(client);
    // Still the short token's identity and deadline: the other user's 1 h token did not extend it.
    expect(await client.closed).toBe(4001);
    expect(Date.now()).toBeLessThan(closesAt(token) + LATE_CLOSE_MS);
  });

  it('closes with 4001 on an expired re-auth token even while the first one is still valid', async () => {
    const { client } = await authenticate(stack.wsUrl(), await login(stack.auth, customer.username));
    const now = Math.floor(Date.now() / 1000);
    const expired = signEdDSA(key.privateKey, { kid: key.kid }, { ...accessClaims(customer), iat: now - 120, exp: now - 60 });
    expect(await client.request({ type: 'auth', token: expired })).toMatchObject({ type: 'error', code: 'auth_failed' });
    expect(await client.closed).toBe(4001);
  });
});
