import { type Stack, sendReliably, startStack, type TestClient, TestClients, waitFor } from '@switchboard/testing';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';

let stack: Stack | undefined;
const clients = new TestClients();

afterEach(async () => {
  await clients.closeAll();
  await stack?.stop();
  stack = undefined;
});

async function storedRows(url: string, sessionId: number) {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const messages = await db.query<{ id: number; seq: number; client_msg_id: string }>(
      'select id::int, seq::int, client_msg_id from messages where session_id = $1 order by seq',
      [sessionId],
    );
    const session = await db.query<{ last_seq: number }>('select last_seq::int from sessions where id = $1', [sessionId]);
    return { messages: messages.rows, lastSeq: session.rows[0]?.last_seq };
  } finally {
    await db.end();
  }
}

describe('persistence killed while clients send', () => {
  it('stores every message exactly once with contiguous seqs, and every member sees each once in order', async () => {
    const running = await startStack({ gateways: 2, persistence: 2, gatewayEnv: { SEND_TIMEOUT_MS: '1500' } });
    stack = running;
    const customerUser = await running.user('user');
    const agentUser = await running.user('agent');
    const customer = await clients.authenticated(running.wsUrl(0), customerUser.token);
    const agent = await clients.authenticated(running.wsUrl(1), agentUser.token);
    const observers = [
      await clients.authenticated(running.wsUrl(0), (await running.user('admin')).token),
      await clients.authenticated(running.wsUrl(1), agentUser.token),
    ];
    const sessionId = ((await customer.request({ type: 'create_session' })).session as { id: number }).id;
    for (const client of [customer, agent, ...observers])
      expect((await client.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');

    const perSender = 60;
    let acked = 0;
    const kills = (async () => {
      await waitFor(() => acked >= 20, 60_000, '20 acks', 5);
      await running.persistence[0]?.kill();
      await waitFor(() => acked >= 45, 60_000, '45 acks', 5);
      await running.persistence[1]?.kill();
      await new Promise((resolve) => setTimeout(resolve, 500));
      await running.startPersistence();
    })();
    /** Each message's ack, by client_msg_id. */
    const acks = new Map<string, Record<string, unknown>>();
    const send = async (client: TestClient, name: string) => {
      for (let i = 0; i < perSender; i++) {
        const clientMsgId = `${name}-${i}`;
        const { ack } = await sendReliably(client, { sessionId, clientMsgId, content: `${name} says ${i}` });
        acks.set(clientMsgId, ack);
        acked++;
      }
    };
    await Promise.all([send(customer, 'customer'), send(agent, 'agent'), kills]);

    const stored = await storedRows(running.database.url, sessionId);
    expect(stored.messages.map((row) => row.seq)).toEqual(Array.from({ length: 2 * perSender }, (_, i) => i + 1));
    expect(new Set(stored.messages.map((row) => row.client_msg_id)).size).toBe(2 * perSender);
    expect(stored.lastSeq).toBe(2 * perSender);
    // Every ack names the row stored, also for a message acked after a redelivery or through a lookup.
    for (const row of stored.messages)
      expect(acks.get(row.client_msg_id), row.client_msg_id).toMatchObject({ session_id: sessionId, seq: row.seq, message_id: row.id });
    for (const name of ['customer', 'agent']) {
      const own = stored.messages.filter((row) => row.client_msg_id.startsWith(`${name}-`)).map((row) => row.client_msg_id);
      expect(own).toEqual(Array.from({ length: perSender }, (_, i) => `${name}-${i}`));
    }

    for (const member of [customer, agent, ...observers]) {
      await member.waitForCount((frame) => frame.type === 'new_message', 2 * perSender, 20_000);
      expect(member.messages(sessionId).map((message) => message.seq)).toEqual(stored.messages.map((row) => row.seq));
    }
  }, 120_000);
});

describe('persistence down', () => {
  it('answers unavailable while no replica runs, then stores the message once when one is back', async () => {
    const running = await startStack({ gateways: 1, persistence: 1, gatewayEnv: { SEND_TIMEOUT_MS: '1000' } });
    stack = running;
    const customer = await clients.authenticated(running.wsUrl(0), (await running.user('user')).token);
    const sessionId = ((await customer.request({ type: 'create_session' })).session as { id: number }).id;
    expect((await customer.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');
    expect(await running.persistence[0]?.stop()).toBe(0);

    expect(await customer.request({ type: 'create_session' })).toMatchObject({ type: 'error', code: 'unavailable' });
    expect(
      await customer.request({ type: 'send_message', session_id: sessionId, content: 'are you there?', client_msg_id: 'during-outage' }),
    ).toMatchObject({
      type: 'error',
      code: 'unavailable',
      client_msg_id: 'during-outage',
    });
    expect(await customer.request({ type: 'ping' })).toMatchObject({ type: 'pong' });

    await running.startPersistence();
    const { ack } = await sendReliably(customer, { sessionId, clientMsgId: 'during-outage', content: 'are you there?' });
    const stored = await storedRows(running.database.url, sessionId);
    expect(stored.messages).toEqual([{ id: expect.any(Number), seq: 1, client_msg_id: 'during-outage' }]);
    expect(ack).toMatchObject({ seq: 1, message_id: stored.messages[0]?.id });
    await customer.waitFor((frame) => frame.type === 'new_message');
    expect(customer.messages(sessionId).map((message) => message.seq)).toEqual([1]);
  }, 120_000);
});
