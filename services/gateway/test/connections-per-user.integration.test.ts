import { passwordOf, postJson, type Stack, startStack, TestClients } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * One account may hold only so many sockets on a gateway: each costs the pod memory, and may make
 * it read a large frame whole. The bound is per gateway, and per user: nobody else is affected.
 */

const LIMIT = 2;
let stack: Stack;
const clients = new TestClients();

beforeAll(async () => {
  stack = await startStack({ gateways: 2, gatewayEnv: { MAX_CONNECTIONS_PER_USER: String(LIMIT) } });
});

afterAll(async () => {
  await clients.closeAll();
  await stack?.stop();
});

describe('MAX_CONNECTIONS_PER_USER', () => {
  it('refuses the auth of one socket too many with rate_limited and 1008, and counts a socket again only once it has closed', async () => {
    const customer = await stack.user('user');
    const first = await clients.authenticated(stack.wsUrl(0), customer.token);
    const second = await clients.authenticated(stack.wsUrl(0), customer.token);

    const third = await clients.connect(stack.wsUrl(0));
    expect(await third.request({ type: 'auth', token: customer.token })).toMatchObject({
      type: 'error',
      code: 'rate_limited',
      message: `at most ${LIMIT} connections per user on this gateway; close one first`,
    });
    expect(await third.closed).toBe(1008);
    expect(third.closeReason).toBe('too many connections for this user');

    // The sockets within the limit work on, a fresh token renews one without counting it again,
    // and other users, and the same user on another gateway, have limits of their own.
    const { id: sessionId } = (await first.request({ type: 'create_session', subject: 'limits' })).session as { id: number };
    expect((await second.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');
    const fresh = await postJson(stack.auth.url('/v1/token'), { username: customer.username, password: passwordOf(customer.username) });
    expect((await second.request({ type: 'auth', token: fresh.access_token })).type).toBe('auth_success');
    const ack = await first.request({ type: 'send_message', session_id: sessionId, content: 'still here', client_msg_id: 'limit-1' });
    expect(ack.type).toBe('message_ack');
    expect((await second.waitFor((frame) => frame.type === 'new_message')).message).toMatchObject({ content: 'still here' });
    await clients.authenticated(stack.wsUrl(0), (await stack.user('user')).token);
    await clients.authenticated(stack.wsUrl(1), customer.token);

    // A closed socket frees its place; one refused never took one.
    await first.close();
    await clients.authenticated(stack.wsUrl(0), customer.token);
    const fourth = await clients.connect(stack.wsUrl(0));
    expect(await fourth.request({ type: 'auth', token: customer.token })).toMatchObject({ type: 'error', code: 'rate_limited' });
  });
});
