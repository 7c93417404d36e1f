import {
  ChatClient,
  type ChatClientOptions,
  type ChatError,
  type ConnectionState,
  type Message,
  type SendResult,
  type WebSocketLike,
} from '@switchboard/client';
import { passwordOf, type Stack, startStack, waitFor } from '@switchboard/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';

let stack: Stack;
const clients: ChatClient[] = [];

/** A client on the given stack with short delays, so that tests stay quick. */
function newClient(options: Pick<ChatClientOptions, 'token'> & Partial<ChatClientOptions>, on: Stack = stack): ChatClient {
  const client = new ChatClient({
    url: on.wsUrl(0),
    WebSocket,
    minReconnectDelayMs: 50,
    maxReconnectDelayMs: 1_000,
    requestTimeoutMs: 5_000,
    ...options,
  });
  clients.push(client);
  return client;
}

/** Everything a client reports, for assertions. */
function record(client: ChatClient) {
  const messages: Message[] = [];
  const states: ConnectionState[] = [];
  const errors: ChatError[] = [];
  client.on('message', (message) => messages.push(message));
  client.on('state', (state) => states.push(state));
  client.on('error', (error) => errors.push(error));
  return {
    messages,
    states,
    errors,
    of: (sessionId: number) => messages.filter((message) => message.session_id === sessionId),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function countStored(sessionId: number, clientMsgId: string, on: Stack = stack): Promise<number> {
  const db = new pg.Client({ connectionString: on.database.url });
  await db.connect();
  try {
    const { rows } = await db.query<{ n: number }>('select count(*)::int as n from messages where session_id = $1 and client_msg_id = $2', [
      sessionId,
      clientMsgId,
    ]);
    return rows[0]?.n ?? 0;
  } finally {
    await db.end();
  }
}

beforeAll(async () => {
  // The kill -9 test sends fast from both sides.
  stack = await startStack({ gateways: 2, gatewayEnv: { RATE_LIMIT_PER_SEC: '1000' } });
});

afterAll(async () => {
  for (const client of clients) client.close();
  await stack?.stop();
});

describe('a conversation through the SDK', () => {
  it('takes a customer on one gateway and an agent on the other through a conversation', async () => {
    const customerUser = await stack.user('user');
    const agentUser = await stack.user('agent');
    const customer = newClient({ token: customerUser.token });
    const agent = newClient({ url: stack.wsUrl(1), token: agentUser.token });
    const customerSeen = record(customer);
    const agentSeen = record(agent);
    await Promise.all([customer.connect(), agent.connect()]);
    expect(customer.state).toBe('ready');
    expect(customer.user).toEqual({ id: customerUser.id, username: customerUser.username, role: 'user' });
    expect(agent.user?.role).toBe('agent');

    const session = await customer.createSession('Where is my parcel?');
    expect(session).toMatchObject({ customer_id: customerUser.id, status: 'open', subject: 'Where is my parcel?' });
    expect(await customer.join(session.id)).toEqual({ lastSeq: 0 });
    expect(await agent.join(session.id)).toEqual({ lastSeq: 0 });

    const sent = await customer.send(session.id, 'Hello, my parcel is late');
    expect(sent).toEqual({ messageId: expect.any(Number), seq: 1, clientMsgId: expect.any(String) });
    const reply = await agent.send(session.id, 'Sorry! It ships today.', { clientMsgId: 'agent-reply-1' });
    expect(reply).toMatchObject({ seq: 2, clientMsgId: 'agent-reply-1' });

    await waitFor(
      () => customerSeen.of(session.id).length === 2 && agentSeen.of(session.id).length === 2,
      5_000,
      'both messages on both sides',
    );
    const expected = [
      {
        id: sent.messageId,
        session_id: session.id,
        seq: 1,
        sender_id: customerUser.id,
        sender_role: 'user',
        content: 'Hello, my parcel is late',
        client_msg_id: sent.clientMsgId,
        created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      },
      expect.objectContaining({ seq: 2, sender_id: agentUser.id, sender_role: 'agent', client_msg_id: 'agent-reply-1' }),
    ];
    expect(customerSeen.of(session.id)).toEqual(expected);
    expect(agentSeen.of(session.id)).toEqual(expected);
    expect(customer.lastSeq(session.id)).toBe(2);

    const history = await agent.history(session.id);
    expect(history.hasMore).toBe(false);
    expect(history.messages.map((message) => message.content)).toEqual(['Hello, my parcel is late', 'Sorry! It ships today.']);
    const older = await customer.history(session.id, { beforeSeq: 2, limit: 1 });
    expect(older).toEqual({ messages: [expect.objectContaining({ seq: 1, id: sent.messageId })], hasMore: false });

    expect(await customer.listSessions()).toEqual([expect.objectContaining({ id: session.id, last_seq: 2 })]);
    expect(await agent.listSessions({ status: 'open', limit: 200 })).toContainEqual(
      expect.objectContaining({ id: session.id, last_seq: 2 }),
    );
    // Page by page, newest first.
    const newer = await customer.createSession('A second question');
    expect(await customer.listSessionsPage({ limit: 1 })).toEqual({ sessions: [expect.objectContaining({ id: newer.id })], hasMore: true });
    expect(await customer.listSessionsPage({ limit: 1, beforeId: newer.id })).toEqual({
      sessions: [expect.objectContaining({ id: session.id })],
      hasMore: false,
    });
    await customer.ping();

    await expect(agent.createSession()).rejects.toMatchObject({ name: 'ChatError', code: 'forbidden' });
    await expect(customer.join(2_000_000_000)).rejects.toMatchObject({ code: 'not_found' });
    await expect(customer.send(session.id, '   ')).rejects.toMatchObject({ code: 'invalid_message' });
    expect([...customerSeen.errors, ...agentSeen.errors]).toEqual([]);

    await customer.leave(session.id);
    await agent.send(session.id, 'Anything else?');
    await waitFor(() => agentSeen.of(session.id).length === 3, 5_000, 'the agent to see its third message');
    await sleep(100);
    expect(customerSeen.of(session.id)).toHaveLength(2);
  });

  it('catches up on join with lastSeq, then follows live messages', async () => {
    const customerUser = await stack.user('user');
    const customer = newClient({ token: customerUser.token });
    await customer.connect();
    const session = await customer.createSession();
    for (const content of ['one', 'two', 'three']) await customer.send(session.id, content);

    const reader = newClient({ url: stack.wsUrl(1), token: customerUser.token });
    const seen = record(reader);
    await reader.connect();
    expect(await reader.join(session.id, { lastSeq: 1 })).toEqual({ lastSeq: 3 });
    await customer.send(session.id, 'four');
    await waitFor(() => seen.of(session.id).length === 3, 5_000, 'the replay and the live message');
    expect(seen.of(session.id).map((message) => [message.seq, message.content])).toEqual([
      [2, 'two'],
      [3, 'three'],
      [4, 'four'],
    ]);
  });
});

/** Delivers frames like `ws`, but can lose the connection at a chosen incoming frame, as a network failure would. */
let loseConnectionAt: ((frame: { type: string; client_msg_id?: string }) => boolean) | undefined;
const outgoing: string[] = [];

class LossyWebSocket implements WebSocketLike {
  private readonly ws: WebSocket;
  onopen: ((event: never) => void) | null = null;
  onmessage: ((event: never) => void) | null = null;
  onclose: ((event: never) => void) | null = null;
  onerror: ((event: never) => void) | null = null;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.onopen = (event) => this.onopen?.(event as never);
    this.ws.onclose = (event) => this.onclose?.(event as never);
    this.ws.onerror = (event) => this.onerror?.(event as never);
    this.ws.onmessage = (event) => {
      const frame = JSON.parse(String(event.data)) as { type: string; client_msg_id?: string };
      if (loseConnectionAt?.(frame)) {
        loseConnectionAt = undefined;
        this.ws.terminate();
        return;
      }
      this.onmessage?.(event as never);
    };
  }

  get readyState(): number {
    return this.ws.readyState;
  }

  send(data: string): void {
    outgoing.push(data);
    this.ws.send(data);
  }

  close(code?: number, reason?: string): void {
    this.ws.close(code, reason);
  }
}

describe('a dropped connection', () => {
  it('resends a message whose ack was lost with the same client_msg_id, and it is stored once', async () => {
    const customerUser = await stack.user('user');
    const customer = newClient({ token: customerUser.token, WebSocket: LossyWebSocket });
    const seen = record(customer);
    await customer.connect();
    const session = await customer.createSession();
    await customer.join(session.id);

    // The message is stored, then the connection dies before its ack arrives.
    loseConnectionAt = (frame) => frame.type === 'message_ack' && frame.client_msg_id === 'lost-ack-1';
    const sent = await customer.send(session.id, 'Is anyone there?', { clientMsgId: 'lost-ack-1' });
    expect(loseConnectionAt).toBeUndefined();
    expect(sent).toMatchObject({ seq: 1, clientMsgId: 'lost-ack-1' });
    expect(seen.states).toContain('reconnecting');
    expect(customer.state).toBe('ready');
    const attempts = outgoing.filter((text) => text.includes('"lost-ack-1"'));
    expect(attempts.length).toBeGreaterThanOrEqual(2);

    await customer.send(session.id, 'Hello?');
    const history = await customer.history(session.id);
    expect(history.messages.map((message) => [message.seq, message.client_msg_id])).toEqual([
      [1, 'lost-ack-1'],
      [2, expect.any(String)],
    ]);
    expect(await countStored(session.id, 'lost-ack-1')).toBe(1);
    await waitFor(() => seen.of(session.id).length === 2, 5_000, 'both messages');
    expect(seen.of(session.id).map((message) => message.seq)).toEqual([1, 2]);
  });

  it('moves a client whose gateway is killed with kill -9 to the next URL, losing and repeating nothing', async () => {
    const victim = await stack.startGateway();
    const customerUser = await stack.user('user');
    const agentUser = await stack.user('agent');
    const customer = newClient({ url: [`ws://127.0.0.1:${victim.port}/ws`, stack.wsUrl(0)], token: customerUser.token });
    const agent = newClient({ url: [stack.wsUrl(1), stack.wsUrl(0)], token: agentUser.token });
    const customerSeen = record(customer);
    const agentSeen = record(agent);
    await Promise.all([customer.connect(), agent.connect()]);
    const session = await customer.createSession('kill -9');
    await customer.join(session.id);
    await agent.join(session.id);

    let customerAcks = 0;
    customer.on('ack', () => customerAcks++);
    const perSide = 40;
    const sends: Promise<SendResult>[] = [];
    let killed: Promise<unknown> | undefined;
    let ackedBeforeKill = 0;
    for (let i = 0; i < perSide; i++) {
      sends.push(customer.send(session.id, `customer ${i}`), agent.send(session.id, `agent ${i}`));
      if (i === 10) {
        // The customer's message just sent is on the wire, unacknowledged.
        ackedBeforeKill = customerAcks;
        killed = victim.kill();
      }
      await sleep(10);
    }
    await killed;
    expect(ackedBeforeKill).toBeLessThan(11);
    const results = await Promise.all(sends);
    const total = perSide * 2;
    expect(results.map((result) => result.seq).sort((a, b) => a - b)).toEqual(range(1, total));

    await waitFor(
      () => customerSeen.of(session.id).length >= total && agentSeen.of(session.id).length >= total,
      15_000,
      'every message on both sides',
    );
    await sleep(200);
    for (const seen of [customerSeen, agentSeen]) {
      const messages = seen.of(session.id);
      expect(messages.map((message) => message.seq)).toEqual(range(1, total));
      // Each side's own messages are stored in the order it sent them.
      for (const side of ['customer', 'agent']) {
        expect(messages.filter((message) => message.content.startsWith(side)).map((message) => message.content)).toEqual(
          range(0, perSide - 1).map((i) => `${side} ${i}`),
        );
      }
    }
    expect(customerSeen.states).toContain('reconnecting');
    expect(customerSeen.states.at(-1)).toBe('ready');
    expect(agentSeen.states).toEqual(['connecting', 'authenticating', 'ready']);
    expect([...customerSeen.errors, ...agentSeen.errors]).toEqual([]);
    expect(customer.lastSeq(session.id)).toBe(total);
    expect(agent.lastSeq(session.id)).toBe(total);
  });

  it('retries sends the gateway refuses with rate_limited until each is stored, in order', async () => {
    const strict = await stack.startGateway({ RATE_LIMIT_PER_SEC: '5' });
    const customerUser = await stack.user('user');
    const customer = newClient({ url: `ws://127.0.0.1:${strict.port}/ws`, token: customerUser.token });
    await customer.connect();
    const session = await customer.createSession();
    const results = await Promise.all(range(1, 20).map((i) => customer.send(session.id, `burst ${i}`)));
    expect(results.map((result) => result.seq)).toEqual(range(1, 20));
    const history = await customer.history(session.id);
    expect(history.messages.map((message) => message.content)).toEqual(range(1, 20).map((i) => `burst ${i}`));
  }, 30_000);
});

describe('authentication', () => {
  it('recovers from a refused token (4001) with a fresh one from the provider', async () => {
    const customerUser = await stack.user('user');
    const tokens = [`${customerUser.token.slice(0, -4)}AAAA`, customerUser.token];
    const provider = vi.fn(async () => tokens.shift() ?? customerUser.token);
    const customer = newClient({ token: provider });
    const failures: Error[] = [];
    customer.on('auth_failed', (error) => failures.push(error));
    await customer.connect();
    expect(customer.state).toBe('ready');
    expect(customer.user?.id).toBe(customerUser.id);
    expect(provider).toHaveBeenCalledTimes(2);
    expect(failures).toEqual([]);
    await customer.ping();
  });

  it('gives up on a bad token: auth_failed, state closed, connect() rejects', async () => {
    const customerUser = await stack.user('user');
    const badToken = `${customerUser.token.slice(0, -4)}AAAA`;
    for (const token of [badToken, vi.fn(() => badToken)]) {
      const customer = newClient({ token });
      const seen = record(customer);
      const failures: Error[] = [];
      customer.on('auth_failed', (error) => failures.push(error));
      await expect(customer.connect()).rejects.toMatchObject({ name: 'ChatError', code: 'auth_failed' });
      expect(customer.state).toBe('closed');
      expect(seen.states.at(-1)).toBe('closed');
      expect(failures).toMatchObject([{ code: 'auth_failed' }]);
      await expect(customer.ping()).rejects.toMatchObject({ code: 'closed' });
      if (typeof token === 'function') expect(token).toHaveBeenCalledTimes(2);
    }
  });

  describe('with tokens that expire after 2 s', () => {
    let shortLived: Stack;

    beforeAll(async () => {
      shortLived = await startStack({ gateways: 1, env: { ACCESS_TOKEN_TTL: '2s' } });
    });

    afterAll(async () => {
      await shortLived?.stop();
    });

    const tokenProvider = (username: string) =>
      vi.fn(async () => {
        const response = await fetch(shortLived.auth.url('/v1/token'), {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username, password: passwordOf(username) }),
        });
        return ((await response.json()) as { access_token: string }).access_token;
      });

    /** Sends a message every 100 ms for 8.5 s: past the 2 s token's expiry and the gateway's 5 s tolerance. */
    async function converseAcrossExpiry(customer: ChatClient, sessionId: number): Promise<SendResult[]> {
      const sends: Promise<SendResult>[] = [];
      const until = Date.now() + 8_500;
      for (let i = 0; Date.now() < until; i++) {
        sends.push(customer.send(sessionId, `tick ${i}`));
        await sleep(100);
      }
      return Promise.all(sends);
    }

    it('refreshes the token on the open socket before it expires: no reconnect, nothing missed', async () => {
      const { username } = await shortLived.user('user');
      const provider = tokenProvider(username);
      const customer = newClient({ token: provider }, shortLived);
      const seen = record(customer);
      await customer.connect();
      const session = await customer.createSession();
      await customer.join(session.id);

      const results = await converseAcrossExpiry(customer, session.id);
      // A token lives 2 s and is refreshed at half its life: several refreshes, one socket.
      expect(provider.mock.calls.length).toBeGreaterThanOrEqual(4);
      expect(seen.states).not.toContain('reconnecting');
      await waitFor(() => seen.of(session.id).length === results.length, 5_000, 'every message');
      expect(seen.of(session.id).map((message) => message.seq)).toEqual(range(1, results.length));
      expect(seen.errors).toEqual([]);
      expect(customer.state).toBe('ready');
    }, 30_000);

    it('reconnects with a fresh token when the gateway closes an expired one with 4001, and misses nothing', async () => {
      const { username } = await shortLived.user('user');
      const provider = tokenProvider(username);
      // Without refreshes, the gateway closes the socket when the token expires.
      const customer = newClient({ token: provider, refreshTokens: false }, shortLived);
      const seen = record(customer);
      await customer.connect();
      const session = await customer.createSession();
      await customer.join(session.id);

      const results = await converseAcrossExpiry(customer, session.id);
      expect(seen.states).toContain('reconnecting');
      expect(provider.mock.calls.length).toBeGreaterThanOrEqual(2);
      await waitFor(() => seen.of(session.id).length === results.length, 5_000, 'every message');
      expect(seen.of(session.id).map((message) => message.seq)).toEqual(range(1, results.length));
      expect(seen.errors).toEqual([]);
    }, 30_000);
  });
});
