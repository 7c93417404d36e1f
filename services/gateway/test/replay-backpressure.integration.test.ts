import { type Stack, startStack, TestClients } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * A gateway holds a socket's frames until the end of each turn, to write them in one call. A
 * page of history replayed in one turn is then all in the socket's buffer at once, however fast
 * the client reads: measured there, it made a client reading at once look slow.
 */

/** The slow-client limit: a socket over four times this is closed at once (256 KiB here). */
const MAX_BUFFERED_BYTES = 64 * 1024;
const MESSAGES = 100;
/** About 400 KiB of history: one page of the replay (up to 512 KiB), over four times the limit. */
const CONTENT = 'x'.repeat(4_000);

let stack: Stack;
const clients = new TestClients();

beforeAll(async () => {
  stack = await startStack({
    gateways: 1,
    gatewayEnv: { RATE_LIMIT_PER_SEC: '1000', MAX_BUFFERED_BYTES: String(MAX_BUFFERED_BYTES) },
  });
});

afterAll(async () => {
  await clients.closeAll();
  await stack?.stop();
});

describe('a replay larger than four times the slow-client limit', () => {
  it('reaches a client that reads at once, which is not closed as slow', async () => {
    const customer = await clients.authenticated(stack.wsUrl(0), (await stack.user('user')).token);
    const created = await customer.request({ type: 'create_session', subject: 'a long history' });
    const sessionId = (created.session as { id: number }).id;
    expect((await customer.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');
    for (let index = 0; index < MESSAGES; index++) {
      const ack = await customer.request({ type: 'send_message', session_id: sessionId, content: CONTENT, client_msg_id: `long-${index}` });
      expect(ack.type).toBe('message_ack');
    }

    const agent = await clients.authenticated(stack.wsUrl(0), (await stack.user('agent')).token);
    expect((await agent.request({ type: 'join_session', session_id: sessionId, last_seq: 0 })).type).toBe('joined_session');
    await agent.waitForCount((frame) => frame.type === 'new_message', MESSAGES);
    expect(agent.messages(sessionId).map((message) => message.seq)).toEqual(Array.from({ length: MESSAGES }, (_, index) => index + 1));
    expect(await agent.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
  }, 60_000);
});
