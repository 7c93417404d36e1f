import type { Socket } from 'node:net';
import { fillHistory, passwordOf, type ServiceProcess, type Stack, startService, startStack, TestClients } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * A client renewing its token while a long replay to it waits for it to read: the `auth` frame is
 * answered in order, after the join, but its token must move the socket's deadline at once.
 */

/** Tokens live 12 s (and the gateway tolerates 5 s of clock skew): the old one runs out mid-test. */
const TTL_S = 12;
const MESSAGES = 2_000;
/** 4,000 three-byte characters: 24 MB of history, more than loopback's socket buffers hold. */
const CONTENT = '\u20ac'.repeat(4_000);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let stack: Stack;
/** An auth service of the same installation issuing tokens of the default hour: the renewal's. */
let longAuth: ServiceProcess;
const clients = new TestClients();

beforeAll(async () => {
  stack = await startStack({
    gateways: 1,
    env: { ACCESS_TOKEN_TTL: `${TTL_S}s` },
    // The replay waits for the reader through the whole pause instead of closing it as slow.
    gatewayEnv: { SLOW_CLIENT_GRACE_MS: '60000' },
  });
  longAuth = await startService('auth', { env: { ...stack.env, ACCESS_TOKEN_TTL: '1h' } });
});

afterAll(async () => {
  await clients.closeAll();
  await longAuth?.stop();
  await stack?.stop();
});

async function freshToken(username: string): Promise<string> {
  const response = await fetch(longAuth.url('/v1/token'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: passwordOf(username) }),
  });
  return ((await response.json()) as { access_token: string }).access_token;
}

describe('a re-auth behind a long replay', () => {
  it('keeps the socket past the old token’s end, and is answered after the replay', async () => {
    const customerUser = await stack.user('user');
    const customer = await clients.authenticated(stack.wsUrl(0), customerUser.token);
    const sessionId = ((await customer.request({ type: 'create_session' })).session as { id: number }).id;
    await fillHistory(stack.database.url, { sessionId, senderId: customerUser.id, content: CONTENT, count: MESSAGES });

    const agentUser = await stack.user('agent');
    const issuedAt = Date.now();
    const agent = await clients.authenticated(stack.wsUrl(0), agentUser.token);
    expect(await agent.request({ type: 'join_session', session_id: sessionId, last_seq: 0 })).toMatchObject({ type: 'joined_session' });
    const socket = (agent.ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    // Before the first token's end, the client renews it, with a token of an hour: however long
    // the rest of the replay takes once the client reads again, that one does not run out.
    await sleep(issuedAt + (TTL_S - 2) * 1000 - Date.now());
    agent.send({ type: 'auth', token: await freshToken(agentUser.username), req_id: 'renew' });
    // Past the first token's end and its 5 s of tolerance, still not reading.
    await sleep(issuedAt + (TTL_S + 5 + 1) * 1000 - Date.now());
    socket.resume();

    expect(await agent.waitFor((frame) => frame.req_id === 'renew', 30_000)).toMatchObject({ type: 'auth_success' });
    expect(agent.closeCode).toBeUndefined();
    // The whole replay, each message once and in order.
    await agent.waitForCount((frame) => frame.type === 'new_message', MESSAGES, 30_000);
    expect(agent.messages(sessionId).map((message) => message.seq)).toEqual(Array.from({ length: MESSAGES }, (_, index) => index + 1));
  }, 60_000);
});
