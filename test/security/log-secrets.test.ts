/**
 * A whole stack (auth, persistence, two gateways) at LOG_LEVEL=debug goes through everything that
 * handles a credential: registrations, good and bad logins, service tokens with good and bad API
 * keys, an admin creating an agent with a bearer header, WebSocket auth with good, doctored and
 * misplaced tokens, sends. Then every line any process wrote is searched for every secret of the
 * run: passwords, tokens (and their signatures alone), API keys and the signing key.
 */
import { randomBytes } from 'node:crypto';
import { type Stack, startStack, TestClient } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accessClaims,
  authenticate,
  b64url,
  clientFrame,
  type Ed25519Key,
  ed25519Key,
  expectRefused,
  nowSeconds,
  pemBody,
  rawWebSocket,
  signEdDSA,
} from './helpers.js';

const secret = (label: string) => `${label}-${randomBytes(12).toString('hex')}`;

/** Every secret of the run, by what it is. */
const secrets = new Map<string, string>();
const keep = (what: string, value: string) => {
  secrets.set(what, value);
  return value;
};
/** A token and its signature alone: neither may be logged. */
const keepToken = (what: string, token: string) => {
  keep(what, token);
  keep(`${what} (signature)`, token.split('.')[2] ?? '');
  return token;
};

let stack: Stack;
let key: Ed25519Key;
const API_KEYS = [secret('api-key-one'), secret('api-key-two')];

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(stack.auth.url(path), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  key = await ed25519Key();
  keep('JWT private key (PEM body)', pemBody(key.pem));
  keep('JWT private key (JWK d)', (key.privateKey.export({ format: 'jwk' }) as { d: string }).d);
  API_KEYS.forEach((apiKey, i) => {
    keep(`API key ${i}`, apiKey);
  });
  // The bootstrap admin's password is set by startStack.
  keep('bootstrap admin password', 'stack-admin-password');
  stack = await startStack({
    gateways: 2,
    env: { LOG_LEVEL: 'debug', JWT_PRIVATE_KEY: key.pem, AUTH_API_KEYS: API_KEYS.join(',') },
  });
});

afterAll(async () => {
  await stack?.stop();
});

describe('a run full of credentials', () => {
  it('goes through registrations, logins, service tokens, admin calls and WebSocket auth', async () => {
    // Registration and logins, good and bad.
    const customerPassword = keep('customer password', secret('customer-pw'));
    const customerName = `logged-customer-${process.pid}`;
    expect((await post('/v1/users', { username: customerName, password: customerPassword, display_name: 'Maria' })).status).toBe(201);
    const customerToken = keepToken(
      'customer token',
      (await post('/v1/token', { username: customerName, password: customerPassword })).body.access_token as string,
    );
    const wrong = keep('wrong password of a real user', secret('customer-pw-typo'));
    expect((await post('/v1/token', { username: customerName, password: wrong })).status).toBe(401);
    expect(
      (await post('/v1/token', { username: 'nobody-here', password: keep('password of an unknown user', secret('guess')) })).status,
    ).toBe(401);
    // A password sent where the username goes, as people do.
    expect((await post('/v1/token', { username: customerPassword, password: customerPassword })).status).toBe(401);
    // A refused registration (too short a name) still carries a password.
    expect((await post('/v1/users', { username: 'x', password: keep('refused registration password', secret('refused-pw')) })).status).toBe(
      400,
    );

    // The admin creates an agent with a bearer header; bad bearers are refused.
    const adminToken = keepToken(
      'admin token',
      (await post('/v1/token', { username: 'stack-admin', password: 'stack-admin-password' })).body.access_token as string,
    );
    const agentPassword = keep('agent password', secret('agent-pw'));
    const agentName = `logged-agent-${process.pid}`;
    expect(
      (await post('/v1/users', { username: agentName, password: agentPassword, role: 'agent' }, { authorization: `Bearer ${adminToken}` }))
        .status,
    ).toBe(201);
    const doctored = keepToken(
      'doctored admin token',
      `${customerToken.split('.')[0]}.${b64url({ ...JSON.parse(Buffer.from(customerToken.split('.')[1] ?? '', 'base64url').toString()), role: 'admin' })}.${customerToken.split('.')[2]}`,
    );
    expect(
      (
        await post(
          '/v1/users',
          { username: `${agentName}-2`, password: agentPassword, role: 'agent' },
          { authorization: `Bearer ${doctored}` },
        )
      ).status,
    ).toBe(401);
    expect(
      (
        await post(
          '/v1/users',
          { username: `${agentName}-3`, password: agentPassword, role: 'agent' },
          { authorization: `Bearer ${customerToken}` },
        )
      ).status,
    ).toBe(403);
    const agentToken = keepToken(
      'agent token',
      (await post('/v1/token', { username: agentName, password: agentPassword })).body.access_token as string,
    );

    // Service tokens with the API keys, and with wrong ones.
    for (const [i, apiKey] of API_KEYS.entries()) {
      const issued = await post('/v1/service-token', { external_id: `crm-${i}`, role: 'user' }, { authorization: `Bearer ${apiKey}` });
      expect(issued.status).toBe(200);
      keepToken(`service token ${i}`, issued.body.access_token as string);
    }
    const wrongKey = keep('wrong API key', secret('api-key-guess'));
    expect((await post('/v1/service-token', { external_id: 'crm-x', role: 'user' }, { authorization: `Bearer ${wrongKey}` })).status).toBe(
      401,
    );
    expect((await post('/v1/service-token', { external_id: 'crm-x', role: 'user' }, { authorization: wrongKey })).status).toBe(401);

    // A token where none belongs: in the query string (RFC 6750 lets clients do that elsewhere).
    expect(
      (await post(`/v1/token?access_token=${customerToken}&api_key=${API_KEYS[0]}`, { username: customerName, password: wrong })).status,
    ).toBe(401);
    await fetch(stack.auth.url(`/.well-known/jwks.json?token=${agentToken}`));
    await fetch(stack.auth.url(`/no/such/path?access_token=${adminToken}`));

    // WebSocket auth on both gateways, good and bad, then a conversation.
    const customer = (await authenticate(stack.wsUrl(0), customerToken)).client;
    const agent = (await authenticate(stack.wsUrl(1), agentToken)).client;
    const session = ((await customer.request({ type: 'create_session', subject: 'logging' })).session as { id: number }).id;
    expect((await agent.request({ type: 'join_session', session_id: session })).type).toBe('joined_session');
    expect((await customer.request({ type: 'send_message', session_id: session, content: 'hello', client_msg_id: 'log-1' })).type).toBe(
      'message_ack',
    );
    expect((await agent.request({ type: 'send_message', session_id: session, content: 'hi!', client_msg_id: 'log-2' })).type).toBe(
      'message_ack',
    );
    expect((await customer.request({ type: 'auth', token: customerToken })).type).toBe('auth_success');
    expect(await agent.request({ type: 'auth', token: customerToken })).toMatchObject({ type: 'error', code: 'forbidden' });

    await expectRefused(stack.wsUrl(0), doctored);
    const expired = keepToken(
      'expired token',
      signEdDSA(
        key.privateKey,
        { kid: key.kid },
        { ...accessClaims({ id: 1, username: 'x' }), iat: nowSeconds() - 120, exp: nowSeconds() - 60 },
      ),
    );
    await expectRefused(stack.wsUrl(1), expired);
    await expectRefused(
      stack.wsUrl(1),
      keepToken('token signed by a stranger', signEdDSA((await ed25519Key()).privateKey, {}, accessClaims({ id: 1, username: 'x' }))),
    );
    // A token in frames the gateway cannot decode, in the upgrade URL, and in a cookie.
    const odd = await TestClient.connect(`${stack.wsUrl(0)}?token=${agentToken}`, { headers: { cookie: `token=${adminToken}` } });
    odd.send(`{"type":"auth","token":"${customerToken}"`);
    odd.send(Buffer.from(JSON.stringify({ type: 'auth', token: customerToken })));
    odd.send({ type: 'auth', token: { value: customerToken } });
    odd.send({ type: 'auth', token: customerToken, password: customerPassword, api_key: API_KEYS[0] });
    await odd.waitFor((frame) => frame.type === 'auth_success');
    // Over MAX_FRAME_BYTES before authenticating: refused, and the socket closed with 1009.
    const oversize = await TestClient.connect(stack.wsUrl(0));
    oversize.send({ type: 'auth', token: customerToken.repeat(200) });
    expect(await oversize.closed).toBe(1009);
    const nonsense = await TestClient.connect(stack.wsUrl(1));
    expect(await nonsense.request({ type: 'nonsense', token: agentToken, password: agentPassword })).toMatchObject({
      code: 'unknown_type',
    });
    // A text frame that is not UTF-8 fails in ws itself: the gateway logs that socket error at debug.
    const broken = await rawWebSocket(stack.gateways[1]?.port ?? 0);
    broken.connection.socket.write(
      clientFrame(0x1, Buffer.concat([Buffer.from(`{"type":"auth","token":"${agentToken}"}`), Buffer.from([0xff])]), true),
    );
    await broken.connection.ended;

    await Promise.all([customer.close(), agent.close(), odd.close(), nonsense.close()]);
  });

  it('captured the logs that could have held them: requests, and socket errors at debug', () => {
    expect(stack.auth.logs.filter((line) => line.includes('"url":"/v1/token"')).length).toBeGreaterThan(5);
    expect(stack.gateways[1]?.logs.some((line) => line.includes('"level":"debug"') && line.includes('socket error'))).toBe(true);
  });

  it('logged none of the secrets anywhere', () => {
    expect(secrets.size).toBeGreaterThan(20);
    const leaks: string[] = [];
    for (const service of [stack.auth, ...stack.persistence, ...stack.gateways]) {
      for (const line of service.logs) {
        for (const [what, value] of secrets) {
          if (value.length >= 8 && line.includes(value)) leaks.push(`${service.name}: ${what} in ${line.slice(0, 300)}`);
        }
      }
    }
    expect(leaks).toEqual([]);
  });
});
