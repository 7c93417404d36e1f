import type { Socket } from 'node:net';
import { fillHistory, metric, rawWsClient, type Stack, startStack, TestClients, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * A client that falls behind while a long history is replayed to it (a slow link, a busy tab):
 * the replay waits for it to read a page before it sends the next, where pages piled up in its
 * buffer until it passed four times MAX_BUFFERED_BYTES and was closed as slow.
 */

const MESSAGES = 2_000;
/** 4,000 three-byte characters: 24 MB of history, more than loopback's socket buffers hold. */
const CONTENT = '\u20ac'.repeat(4_000);

let stack: Stack;
const clients = new TestClients();

beforeAll(async () => {
  stack = await startStack({ gateways: 1 });
});

afterAll(async () => {
  await clients.closeAll();
  await stack?.stop();
});

describe('a replay to a client that stops reading for a while', () => {
  it('waits for the client to catch up, and the client gets all of it with its socket open', async () => {
    const customerUser = await stack.user('user');
    const customer = await clients.authenticated(stack.wsUrl(0), customerUser.token);
    const created = await customer.request({ type: 'create_session', subject: 'a very long history' });
    const sessionId = (created.session as { id: number }).id;
    await fillHistory(stack.database.url, { sessionId, senderId: customerUser.id, content: CONTENT, count: MESSAGES });

    const agent = await clients.authenticated(stack.wsUrl(0), (await stack.user('agent')).token);
    const joined = agent.request({ type: 'join_session', session_id: sessionId, last_seq: 0 });
    expect(await joined).toMatchObject({ type: 'joined_session', last_seq: MESSAGES });
    // Stops reading for 3 s, less than the slow-client grace period (5 s).
    const socket = (agent.ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    socket.resume();

    // The last seq, rather than a count: `waitForCount` goes through every frame for every frame.
    await agent.waitFor((frame) => frame.type === 'new_message' && (frame.message as { seq: number }).seq === MESSAGES, 60_000);
    expect(agent.messages(sessionId).map((message) => message.seq)).toEqual(Array.from({ length: MESSAGES }, (_, index) => index + 1));
    expect(await agent.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
  }, 90_000);
});

describe('a client that sends a close frame during its replay and keeps TCP open', () => {
  it('is left at once: the replay stops, rather than fetching on unpaced until TCP closes', async () => {
    // A gateway of its own, so that its session gauge counts this client alone.
    const gateway = await stack.startGateway();
    const customerUser = await stack.user('user');
    const customer = await clients.authenticated(stack.wsUrl(0), customerUser.token);
    const created = await customer.request({ type: 'create_session', subject: 'closed during its replay' });
    const sessionId = (created.session as { id: number }).id;
    await fillHistory(stack.database.url, { sessionId, senderId: customerUser.id, content: CONTENT, count: MESSAGES });

    const raw = await rawWsClient(gateway.port);
    raw.sendText(JSON.stringify({ type: 'auth', token: (await stack.user('agent')).token }));
    await waitFor(() => raw.frames.some((frame) => frame.type === 'auth_success'), 5_000, 'auth_success');
    raw.sendText(JSON.stringify({ type: 'join_session', session_id: sessionId, last_seq: 0 }));
    await waitFor(() => raw.frames.some((frame) => frame.type === 'joined_session'), 5_000, 'joined_session');
    raw.sendClose(1000);
    // ws answers the close frame and then waits up to 30 s for the client to end TCP. Nothing the
    // replay sends meanwhile is written, so it never waited for the client, and fetched all
    // 24 MB for nobody; the socket stayed in the session until TCP closed.
    expect(await raw.closeFrame).toBe(1000);
    await waitFor(async () => (await metric(gateway, 'switchboard_gateway_sessions')) === 0, 5_000, 'the gateway to leave the session');
    const replayed = raw.frames.filter((frame) => frame.type === 'new_message').length;
    expect(replayed).toBeLessThan(MESSAGES);
    raw.socket.destroy();
  }, 90_000);
});
