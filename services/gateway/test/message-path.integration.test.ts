import { type Frame, metric, type Stack, startStack, type TestClient, TestClients } from '@switchboard/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let stack: Stack;
const clients = new TestClients();

const connect = (gateway: number, token: string) => clients.authenticated(stack.wsUrl(gateway), token);

async function newSession(customer: TestClient): Promise<number> {
  const reply = await customer.request({ type: 'create_session', subject: 'Order #1234' });
  expect(reply.type).toBe('session_created');
  return (reply.session as { id: number }).id;
}

async function join(client: TestClient, sessionId: number, lastSeq?: number): Promise<Frame> {
  const reply = await client.request({
    type: 'join_session',
    session_id: sessionId,
    ...(lastSeq === undefined ? {} : { last_seq: lastSeq }),
  });
  expect(reply.type).toBe('joined_session');
  return reply;
}

const acks = (client: TestClient) => client.frames.filter((frame) => frame.type === 'message_ack');

beforeAll(async () => {
  // Three senders put 100 messages each on the wire at once: far over the default rate limit.
  stack = await startStack({ gateways: 2, gatewayEnv: { RATE_LIMIT_PER_SEC: '1000' } });
});

afterAll(async () => {
  await clients.closeAll();
  await stack?.stop();
});

describe('the seed flow across two gateways', () => {
  it('takes a customer on one gateway and an agent on the other through a conversation', async () => {
    const customerUser = await stack.user('user');
    const agentUser = await stack.user('agent');
    const customer = await clients.connect(stack.wsUrl(0));
    expect(customer.frames[0]).toMatchObject({
      type: 'connected',
      connection_id: expect.any(String),
      heartbeat_interval_ms: expect.any(Number),
      protocol_version: 1,
    });
    expect(await customer.request({ type: 'auth', token: customerUser.token })).toMatchObject({
      type: 'auth_success',
      user: { id: customerUser.id, username: customerUser.username, role: 'user' },
    });
    const agent = await connect(1, agentUser.token);

    const created = await customer.request({ type: 'create_session', subject: 'Where is my parcel?' });
    expect(created).toMatchObject({
      type: 'session_created',
      session: { customer_id: customerUser.id, status: 'open', subject: 'Where is my parcel?', created_at: expect.any(String) },
    });
    const sessionId = (created.session as { id: number }).id;
    expect(await join(customer, sessionId)).toMatchObject({ session_id: sessionId, last_seq: 0 });
    expect(await join(agent, sessionId)).toMatchObject({ session_id: sessionId, last_seq: 0 });

    customer.send({
      type: 'send_message',
      session_id: sessionId,
      content: 'Hello, my parcel is late',
      client_msg_id: 'c-1',
      req_id: 'send-1',
    });
    const ack = await customer.waitFor((frame) => frame.type === 'message_ack');
    expect(ack).toMatchObject({ req_id: 'send-1', session_id: sessionId, client_msg_id: 'c-1', message_id: expect.any(Number), seq: 1 });
    const expected = {
      id: ack.message_id,
      session_id: sessionId,
      seq: 1,
      sender_id: customerUser.id,
      sender_role: 'user',
      content: 'Hello, my parcel is late',
      client_msg_id: 'c-1',
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    };
    // How soon is the bench's to measure (docs/performance.md), not a test's.
    expect((await agent.waitFor((frame) => frame.type === 'new_message')).message).toEqual(expected);
    expect((await customer.waitFor((frame) => frame.type === 'new_message')).message).toEqual(expected);

    agent.send({ type: 'send_message', session_id: sessionId, content: 'Sorry! It ships today.' });
    const reply = await customer.waitFor((frame) => frame.type === 'new_message' && (frame.message as { seq: number }).seq === 2);
    expect(reply.message).toMatchObject({
      sender_id: agentUser.id,
      sender_role: 'agent',
      content: 'Sorry! It ships today.',
      client_msg_id: expect.any(String),
    });
    expect((await agent.waitFor((frame) => frame.type === 'message_ack')).seq).toBe(2);
  });
});

describe('concurrent senders', () => {
  it('delivers 3 × 100 messages to every member once, in seq order, each sender in its own order', async () => {
    const customerUser = await stack.user('user');
    const customer = await connect(0, customerUser.token);
    const agentA = await connect(1, (await stack.user('agent')).token);
    const agentB = await connect(0, (await stack.user('agent')).token);
    const watcher = await connect(1, (await stack.user('admin')).token);
    const sessionId = await newSession(customer);
    const senders = [customer, agentA, agentB];
    for (const client of [...senders, watcher]) await join(client, sessionId);

    senders.forEach((sender, s) => {
      for (let i = 0; i < 100; i++)
        sender.send({ type: 'send_message', session_id: sessionId, content: `sender ${s} message ${i}`, client_msg_id: `s${s}-${i}` });
    });

    for (const member of [...senders, watcher]) {
      const received = (await member.waitForCount((frame) => frame.type === 'new_message', 300, 20_000)).map(
        (frame) => frame.message as { seq: number; client_msg_id: string },
      );
      expect(received.map((message) => message.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
      expect(new Set(received.map((message) => message.client_msg_id)).size).toBe(300);
      for (let s = 0; s < 3; s++) {
        const own = received.filter((message) => message.client_msg_id.startsWith(`s${s}-`)).map((message) => message.client_msg_id);
        expect(own).toEqual(Array.from({ length: 100 }, (_, i) => `s${s}-${i}`));
      }
    }
    for (const sender of senders) expect(acks(sender).filter((ack) => ack.session_id === sessionId)).toHaveLength(100);
  });
});

describe('retries', () => {
  it('stores a retried client_msg_id once and acks it with the original id and seq', async () => {
    const customerUser = await stack.user('user');
    const customer = await connect(0, customerUser.token);
    const agent = await connect(1, (await stack.user('agent')).token);
    const sessionId = await newSession(customer);
    await join(customer, sessionId);
    await join(agent, sessionId);

    const gateway = stack.gateways[0];
    if (!gateway) throw new Error('no gateway');
    const duplicatesBefore = await metric(gateway, 'switchboard_gateway_duplicate_sends_total');
    const first = await customer.request({ type: 'send_message', session_id: sessionId, content: 'once', client_msg_id: 'retry-me' });
    const second = await customer.request({ type: 'send_message', session_id: sessionId, content: 'once', client_msg_id: 'retry-me' });
    expect(first).toMatchObject({ type: 'message_ack', seq: 1 });
    expect(second).toMatchObject({ type: 'message_ack', seq: 1, message_id: first.message_id });
    // The stream took the retry for the message it held.
    expect((await metric(gateway, 'switchboard_gateway_duplicate_sends_total')) - duplicatesBefore).toBe(1);
    // A later message proves the retry produced no second event before it.
    await customer.request({ type: 'send_message', session_id: sessionId, content: 'next', client_msg_id: 'after-retry' });
    await agent.waitFor((frame) => frame.type === 'new_message' && (frame.message as { seq: number }).seq === 2);
    expect(agent.messages(sessionId).map((message) => message.seq)).toEqual([1, 2]);
    expect(customer.messages(sessionId).map((message) => message.seq)).toEqual([1, 2]);

    const db = new pg.Client({ connectionString: stack.database.url });
    await db.connect();
    try {
      const { rows } = await db.query('select count(*)::int as n from messages where session_id = $1 and client_msg_id = $2', [
        sessionId,
        'retry-me',
      ]);
      expect(rows[0].n).toBe(1);
    } finally {
      await db.end();
    }
  });
});

describe('client_msg_ids a NATS header cannot carry as they are', () => {
  it('stores ids with line breaks or white space at their ends as distinct messages, and the gateway stays up', async () => {
    const customer = await connect(0, (await stack.user('user')).token);
    const sessionId = await newSession(customer);
    await join(customer, sessionId);

    const ids = ['a\nb', 'a\r\nb', 'dup', 'dup ', ' dup', 'dup\t'];
    const seqs: unknown[] = [];
    for (const [index, id] of ids.entries()) {
      const ack = await customer.request({ type: 'send_message', session_id: sessionId, content: `m${index}`, client_msg_id: id });
      expect(ack).toMatchObject({ type: 'message_ack', client_msg_id: id });
      seqs.push(ack.seq);
    }
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6]);
    // A retry of one of them is still the same message.
    expect(await customer.request({ type: 'send_message', session_id: sessionId, content: 'm3', client_msg_id: 'dup ' })).toMatchObject({
      type: 'message_ack',
      seq: 4,
    });
    expect(await customer.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
  });
});

describe("another sender's client_msg_id", () => {
  it('is refused with invalid_message rather than acked with the other message, and nothing is stored', async () => {
    const customer = await connect(0, (await stack.user('user')).token);
    const agent = await connect(1, (await stack.user('agent')).token);
    const sessionId = await newSession(customer);
    await join(customer, sessionId);
    await join(agent, sessionId);

    // Both count their messages from 1, as a simple client might.
    expect(await customer.request({ type: 'send_message', session_id: sessionId, content: 'mine', client_msg_id: '1' })).toMatchObject({
      type: 'message_ack',
      seq: 1,
    });
    const refused = await agent.request({ type: 'send_message', session_id: sessionId, content: 'theirs', client_msg_id: '1' });
    expect(refused).toMatchObject({ type: 'error', code: 'invalid_message' });
    expect(String(refused.message)).toContain('another sender');

    // With a fresh id it goes through, as the next seq: the refused one took none.
    expect(await agent.request({ type: 'send_message', session_id: sessionId, content: 'theirs', client_msg_id: 'a-1' })).toMatchObject({
      type: 'message_ack',
      seq: 2,
    });
    const history = await agent.request({ type: 'history', session_id: sessionId });
    expect((history.messages as { content: string }[]).map((message) => message.content)).toEqual(['mine', 'theirs']);
  });
});

describe('a confirmed event that never arrives', () => {
  it('is caught up by the periodic check of the sessions against the database', async () => {
    const customer = await connect(0, (await stack.user('user')).token);
    const agentUser = await stack.user('agent');
    const agent = await connect(1, agentUser.token);
    const sessionId = await newSession(customer);
    await join(customer, sessionId);
    await join(agent, sessionId);
    expect(await agent.request({ type: 'send_message', session_id: sessionId, content: 'hello', client_msg_id: 'a-1' })).toMatchObject({
      seq: 1,
    });
    await customer.waitFor((frame) => frame.type === 'new_message');

    // Stored as persistence stores it, and no event published: as if NATS had lost it.
    const db = new pg.Client({ connectionString: stack.database.url });
    await db.connect();
    try {
      await db.query('begin');
      await db.query('update sessions set last_seq = 2 where id = $1', [sessionId]);
      await db.query(
        "insert into messages (session_id, seq, sender_id, sender_role, content, client_msg_id) values ($1, 2, $2, 'agent', 'are you there?', 'a-2')",
        [sessionId, agentUser.id],
      );
      await db.query('commit');
    } finally {
      await db.end();
    }
    // Nothing else happens in the session; the check (every 5 s, then 1 s of grace) finds it.
    const late = await customer.waitFor((frame) => frame.type === 'new_message' && (frame.message as { seq: number }).seq === 2, 15_000);
    expect(late.message).toMatchObject({ content: 'are you there?' });
    await agent.waitFor((frame) => frame.type === 'new_message' && (frame.message as { seq: number }).seq === 2, 5_000);
    expect(customer.messages(sessionId).map((message) => message.seq)).toEqual([1, 2]);
  });
});

describe('reconnects and history', () => {
  it('replays exactly the missed messages to a client rejoining on the other gateway, then live ones', async () => {
    const customerUser = await stack.user('user');
    const customer = await connect(0, customerUser.token);
    const agentUser = await stack.user('agent');
    let agent = await connect(1, agentUser.token);
    const sessionId = await newSession(customer);
    await join(customer, sessionId);
    await join(agent, sessionId);
    for (let i = 1; i <= 3; i++)
      await customer.request({ type: 'send_message', session_id: sessionId, content: `before ${i}`, client_msg_id: `b${i}` });
    await agent.waitForCount((frame) => frame.type === 'new_message', 3);
    await agent.close();

    for (let i = 4; i <= 8; i++)
      await customer.request({ type: 'send_message', session_id: sessionId, content: `missed ${i}`, client_msg_id: `m${i}` });

    agent = await connect(0, agentUser.token);
    const joined = await join(agent, sessionId, 3);
    expect(joined.last_seq).toBe(8);
    await agent.waitForCount((frame) => frame.type === 'new_message', 5);
    await customer.request({ type: 'send_message', session_id: sessionId, content: 'live 9', client_msg_id: 'l9' });
    await agent.waitForCount((frame) => frame.type === 'new_message', 6);
    expect(agent.messages(sessionId).map((message) => [message.seq, message.content])).toEqual([
      [4, 'missed 4'],
      [5, 'missed 5'],
      [6, 'missed 6'],
      [7, 'missed 7'],
      [8, 'missed 8'],
      [9, 'live 9'],
    ]);
    // joined_session comes before the replayed messages.
    const order = agent.frames.map((frame) => frame.type).filter((type) => type === 'joined_session' || type === 'new_message');
    expect(order[0]).toBe('joined_session');
  });

  it('pages history with before_seq, limit and has_more', async () => {
    const customer = await connect(1, (await stack.user('user')).token);
    const sessionId = await newSession(customer);
    for (let i = 1; i <= 7; i++) await customer.request({ type: 'send_message', session_id: sessionId, content: `h${i}` });

    const newest = await customer.request({ type: 'history', session_id: sessionId, limit: 3 });
    expect(newest).toMatchObject({ type: 'history', session_id: sessionId, has_more: true });
    expect((newest.messages as { seq: number }[]).map((message) => message.seq)).toEqual([5, 6, 7]);
    const older = await customer.request({ type: 'history', session_id: sessionId, limit: 3, before_seq: 5 });
    expect((older.messages as { seq: number }[]).map((message) => message.seq)).toEqual([2, 3, 4]);
    expect(older.has_more).toBe(true);
    const oldest = await customer.request({ type: 'history', session_id: sessionId, limit: 3, before_seq: 2 });
    expect((oldest.messages as { seq: number }[]).map((message) => message.seq)).toEqual([1]);
    expect(oldest.has_more).toBe(false);
    const all = await customer.request({ type: 'history', session_id: sessionId });
    expect((all.messages as unknown[]).length).toBe(7);
    expect(all.has_more).toBe(false);
  });
});

describe('who may do what', () => {
  it("keeps a customer out of another customer's session and lets agents and admins in", async () => {
    const owner = await connect(0, (await stack.user('user')).token);
    const stranger = await connect(1, (await stack.user('user')).token);
    const agent = await connect(1, (await stack.user('agent')).token);
    const sessionId = await newSession(owner);

    for (const frame of [
      { type: 'join_session', session_id: sessionId },
      { type: 'send_message', session_id: sessionId, content: 'let me in' },
      { type: 'history', session_id: sessionId },
    ]) {
      expect(await stranger.request(frame)).toMatchObject({ type: 'error', code: 'forbidden' });
    }
    expect((await agent.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');
    expect(await agent.request({ type: 'create_session' })).toMatchObject({ type: 'error', code: 'forbidden' });
    expect(await owner.request({ type: 'join_session', session_id: 999_999 })).toMatchObject({ type: 'error', code: 'not_found' });
    const mine = await owner.request({ type: 'list_sessions' });
    expect((mine.sessions as { id: number }[]).map((session) => session.id)).toEqual([sessionId]);
    expect(mine.has_more).toBe(false);
    // The owner's next session, then a page after it: the first one, and no more.
    const newer = await newSession(owner);
    const first = await owner.request({ type: 'list_sessions', limit: 1 });
    expect(first).toMatchObject({ type: 'sessions', sessions: [{ id: newer }], has_more: true });
    const next = await owner.request({ type: 'list_sessions', limit: 1, before_id: newer });
    expect(next).toMatchObject({ type: 'sessions', sessions: [{ id: sessionId }], has_more: false });
    const all = await agent.request({ type: 'list_sessions', status: 'open' });
    expect((all.sessions as { id: number }[]).map((session) => session.id)).toContain(sessionId);
  });
});
