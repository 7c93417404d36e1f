import type { Socket } from 'node:net';
import { fillHistory, type Stack, startStack, TestClients } from '@switchboard/testing';
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
