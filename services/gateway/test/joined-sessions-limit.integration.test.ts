import { type Stack, startStack, TestClients } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** Each session a socket joins costs the gateway a NATS subscription and memory: one socket may not join without end. */

let stack: Stack;
const clients = new TestClients();

beforeAll(async () => {
  stack = await startStack({ gateways: 1, gatewayEnv: { MAX_SESSIONS_PER_CONNECTION: '2' } });
});

afterAll(async () => {
  await clients.closeAll();
  await stack?.stop();
});

describe('MAX_SESSIONS_PER_CONNECTION', () => {
  it('refuses a join over the limit with forbidden, and takes a rejoin, or a join after a leave', async () => {
    const customer = await clients.authenticated(stack.wsUrl(0), (await stack.user('user')).token);
    const sessions: number[] = [];
    for (const subject of ['one', 'two', 'three']) {
      const created = await customer.request({ type: 'create_session', subject });
      sessions.push((created.session as { id: number }).id);
    }
    const [one = 0, two = 0, three = 0] = sessions;
    const agent = await clients.authenticated(stack.wsUrl(0), (await stack.user('agent')).token);
    const join = (sessionId: number) => agent.request({ type: 'join_session', session_id: sessionId });

    expect((await join(one)).type).toBe('joined_session');
    expect((await join(two)).type).toBe('joined_session');
    expect(await join(three)).toMatchObject({
      type: 'error',
      code: 'forbidden',
      message: 'at most 2 sessions joined per connection; leave one first',
    });
    // Joining one of its sessions again is not another session.
    expect((await join(two)).type).toBe('joined_session');
    expect((await agent.request({ type: 'leave_session', session_id: one })).type).toBe('left_session');
    expect((await join(three)).type).toBe('joined_session');

    // The socket works on, in the sessions it holds, and another socket has a limit of its own.
    const ack = await customer.request({ type: 'send_message', session_id: three, content: 'still here', client_msg_id: 'limit-1' });
    expect(ack.type).toBe('message_ack');
    await agent.waitFor((frame) => frame.type === 'new_message' && (frame.message as { session_id: number }).session_id === three);
    const other = await clients.authenticated(stack.wsUrl(0), (await stack.user('agent')).token);
    expect((await other.request({ type: 'join_session', session_id: one })).type).toBe('joined_session');
  });
});
