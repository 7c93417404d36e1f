import type { Message } from '@switchboard/protocol';
import { clientFrameSchemas } from '@switchboard/protocol';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatClient, type ChatClientOptions, type ConnectionState, MAX_TOKEN_CHARS } from './chat-client.js';
import { ChatError } from './errors.js';
import type { WebSocketLike } from './socket.js';

type Frame = Record<string, unknown> & { type: string };

/** A scripted WebSocket: the test plays the gateway. */
class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  /** Hooks for a test that plays the gateway for every socket: a new socket, a frame written to one. */
  static onCreate: ((socket: FakeSocket) => void) | undefined;
  static onFrame: ((socket: FakeSocket, frame: Frame) => void) | undefined;
  readyState = 0;
  readonly sent: Frame[] = [];
  closedWith: number | undefined;
  onopen: ((event: never) => void) | null = null;
  onmessage: ((event: never) => void) | null = null;
  onclose: ((event: never) => void) | null = null;
  onerror: ((event: never) => void) | null = null;

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
    FakeSocket.onCreate?.(this);
  }

  static last(): FakeSocket {
    const socket = FakeSocket.all.at(-1);
    if (!socket) throw new Error('no socket opened');
    return socket;
  }

  send(data: string): void {
    const frame = JSON.parse(data) as Frame;
    this.sent.push(frame);
    FakeSocket.onFrame?.(this, frame);
  }

  close(code?: number): void {
    this.closedWith = code;
    this.readyState = 3;
  }

  open(): void {
    this.readyState = 1;
    this.onopen?.({} as never);
    this.receive({ type: 'connected', connection_id: 'c', heartbeat_interval_ms: 25_000, protocol_version: 1 });
  }

  receive(frame: Frame): void {
    this.onmessage?.({ data: JSON.stringify(frame) } as never);
  }

  serverClose(code: number, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason } as never);
  }

  sentOf(type: string): Frame[] {
    return this.sent.filter((frame) => frame.type === type);
  }
}

const USER = { id: 5, username: 'maria', role: 'user' as const };
const message = (seq: number, sessionId = 7): Message => ({
  id: 100 + seq,
  session_id: sessionId,
  seq,
  sender_id: 9,
  sender_role: 'agent',
  content: `message ${seq}`,
  client_msg_id: `m${seq}`,
  created_at: '2026-01-01T00:00:00.000Z',
});

const flush = () => vi.advanceTimersByTimeAsync(0);

function newClient(options: Partial<ChatClientOptions> = {}) {
  const client = new ChatClient({ url: ['ws://a/ws', 'ws://b/ws'], token: 'token-1', WebSocket: FakeSocket, ...options });
  const states: ConnectionState[] = [];
  const messages: Message[] = [];
  const errors: ChatError[] = [];
  client.on('state', (state) => states.push(state));
  client.on('message', (m) => messages.push(m));
  client.on('error', (error) => errors.push(error));
  return { client, states, messages, errors };
}

/** Opens the newest socket and answers its auth frame. */
async function accept(socket = FakeSocket.last()): Promise<FakeSocket> {
  socket.open();
  await flush();
  const auth = socket.sentOf('auth').at(-1);
  if (!auth) throw new Error('no auth frame sent');
  socket.receive({ type: 'auth_success', req_id: auth.req_id, user: USER });
  return socket;
}

/** Opens the newest socket and refuses its auth frame as a gateway does: `auth_failed` with `message`, then 4001. */
async function refuseAuth(message: string): Promise<FakeSocket> {
  const socket = FakeSocket.last();
  socket.open();
  await flush();
  socket.receive({ type: 'error', req_id: 'auth', code: 'auth_failed', message });
  socket.serverClose(4001);
  return socket;
}

/** Lets the reconnect timer fire and accepts the new socket. */
async function reconnect(): Promise<FakeSocket> {
  const before = FakeSocket.all.length;
  await vi.advanceTimersByTimeAsync(250);
  expect(FakeSocket.all.length).toBe(before + 1);
  return accept();
}

/** A client with these options, connected and authenticated on its first socket. */
async function connected(options: Partial<ChatClientOptions> = {}) {
  const created = newClient(options);
  const connecting = created.client.connect();
  const socket = await accept();
  await connecting;
  return { ...created, socket };
}

async function joined(client: ChatClient, socket: FakeSocket, sessionId: number, lastSeq: number) {
  const joining = client.join(sessionId);
  const frame = socket.sentOf('join_session').at(-1);
  socket.receive({ type: 'joined_session', req_id: frame?.req_id, session_id: sessionId, last_seq: lastSeq });
  return joining;
}

/** Runs `act` after the frame being handled, as a reply from the network would come. */
const later = (act: () => void) => void Promise.resolve().then(act);

/**
 * Plays the gateway for every socket: it opens them, answers `auth` and `join_session`, and
 * enforces its frame rate as services/gateway does (a bucket of `ratePerSec` with twice that as
 * burst; 200 refused frames within 10 s close the socket with 1008).
 */
function playGateway({ ratePerSec = 20 } = {}) {
  const burst = ratePerSec * 2;
  const seen = { refused: 0, closes: 0 };
  const limits = new Map<FakeSocket, { tokens: number; at: number; violations: number; windowStart: number }>();
  FakeSocket.onCreate = (socket) => later(() => socket.open());
  FakeSocket.onFrame = (socket, frame) => {
    const now = Date.now();
    const limit = limits.get(socket) ?? { tokens: burst, at: now, violations: 0, windowStart: now };
    limits.set(socket, limit);
    limit.tokens = Math.min(burst, limit.tokens + ((now - limit.at) / 1000) * ratePerSec);
    limit.at = now;
    const reply = (answer: Frame) => later(() => socket.readyState === 1 && socket.receive(answer));
    if (limit.tokens < 1) {
      seen.refused++;
      reply({ type: 'error', req_id: frame.req_id, code: 'rate_limited', message: 'over the rate; frame dropped' });
      if (now - limit.windowStart > 10_000) {
        limit.windowStart = now;
        limit.violations = 0;
      }
      if (++limit.violations === 200) {
        seen.closes++;
        later(() => socket.serverClose(1008, 'rate limit exceeded'));
      }
      return;
    }
    limit.tokens -= 1;
    if (frame.type === 'auth') reply({ type: 'auth_success', req_id: frame.req_id, user: USER });
    if (frame.type === 'ping') reply({ type: 'pong', req_id: frame.req_id });
    if (frame.type === 'join_session') reply({ type: 'joined_session', req_id: frame.req_id, session_id: frame.session_id, last_seq: 0 });
  };
  return seen;
}

const noop = () => undefined;
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

beforeEach(() => {
  vi.useFakeTimers();
  FakeSocket.all = [];
  FakeSocket.onCreate = undefined;
  FakeSocket.onFrame = undefined;
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('connecting', () => {
  it('authenticates, then reports ready and the user', async () => {
    const { client, states } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    expect(socket.url).toBe('ws://a/ws');
    expect(socket.sentOf('auth')[0]).toMatchObject({ token: 'token-1' });
    expect(states).toEqual(['connecting', 'authenticating', 'ready']);
    expect(client.user).toEqual(USER);
    client.close();
    expect(client.state).toBe('closed');
    expect(socket.closedWith).toBe(4000);
  });

  it('keeps trying, through the URL list, until a gateway answers', async () => {
    const { client } = newClient();
    const connecting = client.connect();
    FakeSocket.last().serverClose(1006);
    await vi.advanceTimersByTimeAsync(250);
    expect(FakeSocket.last().url).toBe('ws://b/ws');
    FakeSocket.last().serverClose(1006);
    await vi.advanceTimersByTimeAsync(500);
    expect(FakeSocket.last().url).toBe('ws://a/ws');
    await accept();
    await expect(connecting).resolves.toBeUndefined();
    client.close();
  });

  it('drops a socket that stays silent, after asking it for a pong', async () => {
    const { client } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    await vi.advanceTimersByTimeAsync(25_000);
    expect(socket.sentOf('ping')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(socket.closedWith).toBe(4000);
    expect(client.state).toBe('reconnecting');
    client.close();
  });
});

describe('a WebSocket that cannot be made', () => {
  /** A WebSocket that throws for a URL with "bad" in it, as browsers and `ws` do for a malformed URL or ws: from an https: page. */
  class PickySocket extends FakeSocket {
    constructor(url: string) {
      if (url.includes('bad')) throw new SyntaxError(`Invalid URL: ${url}`);
      super(url);
    }
  }

  it('fails connect() with the reason once every URL has thrown, rather than retry for ever without a word', async () => {
    const { client, errors, states } = newClient({ url: ['ws://bad-a', 'ws://bad-b'], WebSocket: PickySocket });
    const outcome = expect(client.connect()).rejects.toMatchObject({
      code: 'closed',
      message: expect.stringContaining('Invalid URL: ws://bad-b'),
    });
    await vi.advanceTimersByTimeAsync(10);
    await outcome;
    expect(errors).toMatchObject([{ code: 'unavailable' }, { code: 'closed' }]);
    expect(states.at(-1)).toBe('closed');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('connects nowhere once a listener of that error closes the client', async () => {
    const { client } = newClient({ url: ['ws://bad-a', 'ws://good'], WebSocket: PickySocket });
    client.on('error', () => client.close());
    const outcome = expect(client.connect()).rejects.toMatchObject({ code: 'closed' });
    await vi.advanceTimersByTimeAsync(1_000);
    await outcome;
    expect(FakeSocket.all).toHaveLength(0);
    expect(client.state).toBe('closed');
  });

  it('reports a URL that throws and goes on to the next one', async () => {
    const { client, errors } = newClient({ url: ['ws://bad-a', 'ws://good'], WebSocket: PickySocket });
    const connecting = client.connect();
    await flush();
    await accept();
    await connecting;
    expect(FakeSocket.last().url).toBe('ws://good');
    expect(errors).toMatchObject([{ code: 'unavailable', message: expect.stringContaining('Invalid URL: ws://bad-a') }]);
    client.close();
  });
});

describe('messages', () => {
  it('delivers each seq once, in order, and after a reconnect rejoins from the last one delivered', async () => {
    const { client, messages, states } = newClient();
    const connecting = client.connect();
    const first = await accept();
    await connecting;
    await expect(joined(client, first, 7, 2)).resolves.toEqual({ lastSeq: 2 });
    for (const seq of [2, 3, 3, 4]) first.receive({ type: 'new_message', message: message(seq) });
    first.receive({ type: 'new_message', message: message(1, 99) });
    expect(messages.map((m) => m.seq)).toEqual([3, 4]);

    first.serverClose(1012, 'restart');
    expect(client.state).toBe('reconnecting');
    const second = await reconnect();
    expect(second.url).toBe('ws://b/ws');
    const rejoin = second.sentOf('join_session')[0];
    expect(rejoin).toMatchObject({ session_id: 7, last_seq: 4 });
    second.receive({ type: 'joined_session', req_id: rejoin?.req_id, session_id: 7, last_seq: 6 });
    for (const seq of [4, 5, 6]) second.receive({ type: 'new_message', message: message(seq) });
    expect(messages.map((m) => m.seq)).toEqual([3, 4, 5, 6]);
    expect(client.lastSeq(7)).toBe(6);
    expect(states).toEqual(['connecting', 'authenticating', 'ready', 'reconnecting', 'authenticating', 'ready']);
    client.close();
  });

  it('joins again when the replay after a join fails', async () => {
    const { client, errors } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    await joined(client, socket, 7, 3);
    const join = socket.sentOf('join_session')[0];
    socket.receive({ type: 'error', req_id: join?.req_id, code: 'unavailable', message: 'down' });
    await vi.advanceTimersByTimeAsync(500);
    expect(socket.sentOf('join_session')[1]).toMatchObject({ session_id: 7, last_seq: 3 });
    expect(errors).toEqual([]);
    client.close();
  });

  it('sends no rejoin of its own once the app has joined the session again', async () => {
    const { client, socket, errors } = await connected();
    await joined(client, socket, 7, 3);
    const first = socket.sentOf('join_session')[0];
    // The replay after the reply fails: a rejoin is due after the backoff, and the app joins first.
    socket.receive({ type: 'error', req_id: first?.req_id, code: 'unavailable', message: 'replay cut short' });
    await joined(client, socket, 7, 3);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(socket.sentOf('join_session')).toHaveLength(2);
    expect(errors).toEqual([]);
    client.close();
  });

  it('waits longer after each failed rejoin, and starts again from short after one succeeds', async () => {
    const { client } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    await joined(client, socket, 7, 3);
    const joins = () => socket.sentOf('join_session');
    // An outage: every rejoin is answered unavailable. With backoff, 30 s see far fewer than the
    // sixty a fixed half second would send.
    const failEach = async (ms: number) => {
      for (let elapsed = 0; elapsed < ms; elapsed += 100) {
        const last = joins().at(-1);
        if (last && !answered.has(last.req_id)) {
          answered.add(last.req_id);
          socket.receive({ type: 'error', req_id: last.req_id, code: 'unavailable', message: 'down' });
        }
        await vi.advanceTimersByTimeAsync(100);
      }
    };
    const answered = new Set<unknown>([joins()[0]?.req_id]);
    socket.receive({ type: 'error', req_id: joins()[0]?.req_id, code: 'unavailable', message: 'replay cut short' });
    await failEach(30_000);
    const duringOutage = joins().length - 1;
    expect(duringOutage).toBeGreaterThan(2);
    expect(duringOutage).toBeLessThan(20);

    // The outage ends: a rejoin succeeds and holds for 10 s, and the next failure is retried within the first step again.
    await vi.advanceTimersByTimeAsync(15_000);
    const rejoin = joins().at(-1);
    answered.add(rejoin?.req_id);
    socket.receive({ type: 'joined_session', req_id: rejoin?.req_id, session_id: 7, last_seq: 3 });
    await vi.advanceTimersByTimeAsync(10_000);
    socket.receive({ type: 'error', req_id: rejoin?.req_id, code: 'unavailable', message: 'replay cut short' });
    const before = joins().length;
    await vi.advanceTimersByTimeAsync(500);
    expect(joins().length).toBe(before + 1);
    client.close();
  });

  it('starts the rejoin backoff over on a new connection after a join that held', async () => {
    const { client } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    await joined(client, socket, 7, 3);
    const joins = () => FakeSocket.last().sentOf('join_session');
    // Five failed rejoins in a row: the next delay would be long.
    for (let failure = 0; failure < 5; failure++) {
      const last = joins().at(-1);
      socket.receive({ type: 'error', req_id: last?.req_id, code: 'unavailable', message: 'down' });
      await vi.advanceTimersByTimeAsync(20_000);
    }
    const held = joins().at(-1);
    socket.receive({ type: 'joined_session', req_id: held?.req_id, session_id: 7, last_seq: 3 });
    await vi.advanceTimersByTimeAsync(10_000);
    // The connection drops after the join has held; on the next one, a failed rejoin is retried soon.
    socket.serverClose(1006);
    const second = await reconnect();
    const rejoin = second.sentOf('join_session').at(-1);
    second.receive({ type: 'error', req_id: rejoin?.req_id, code: 'unavailable', message: 'down' });
    await vi.advanceTimersByTimeAsync(500);
    expect(second.sentOf('join_session')).toHaveLength(2);
    client.close();
  });

  it('keeps backing off a rejoin whose replay fails each time after its reply', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const { client, errors, socket } = await connected();
    await joined(client, socket, 7, 3);
    // Every replay fails: each join is answered, then refused with its req_id.
    FakeSocket.onFrame = (target, frame) => {
      if (frame.type !== 'join_session') return;
      later(() => {
        target.receive({ type: 'joined_session', req_id: frame.req_id, session_id: 7, last_seq: 5 });
        target.receive({ type: 'error', req_id: frame.req_id, code: 'unavailable', message: 'replay cut short' });
      });
    };
    const [join] = socket.sentOf('join_session');
    socket.receive({ type: 'error', req_id: join?.req_id, code: 'unavailable', message: 'replay cut short' });
    await vi.advanceTimersByTimeAsync(30_000);
    // Ceilings 500, 1000, 2000 ... 10 000 ms, half of each drawn: nine rejoins in 30 s, where
    // counting each reply as a success made one every 250 ms.
    const rejoins = socket.sentOf('join_session').length - 1;
    expect(rejoins).toBeGreaterThan(5);
    expect(rejoins).toBeLessThanOrEqual(12);
    expect(errors).toEqual([]);
    client.close();
  });

  it.each([
    ['forbidden', 1],
    ['not_found', 1],
    ['internal', 3],
  ])('gives up a session whose rejoin is refused with %s after %i tries, and says so', async (code, tries) => {
    const { client, errors, socket } = await connected();
    await joined(client, socket, 7, 3);
    await joined(client, socket, 8, 3);
    const joinsOf7 = () => socket.sentOf('join_session').filter((frame) => frame.session_id === 7);
    for (let refused = 0; refused < tries; refused++) {
      socket.receive({ type: 'error', req_id: joinsOf7().at(-1)?.req_id, code, message: 'replay failed' });
      // A retry goes out within the backoff's first steps; none after the last refusal.
      await vi.advanceTimersByTimeAsync(5_000);
    }
    expect(joinsOf7()).toHaveLength(tries);
    expect(errors.map((error) => error.message)).toEqual([
      ...Array(tries - 1).fill('session 7 could not be joined again, trying again: replay failed'),
      'session 7 could not be joined again: replay failed',
    ]);
    // Forgotten: not rejoined after a reconnect either, while session 8 is.
    socket.serverClose(1006);
    const second = await reconnect();
    expect(second.sentOf('join_session').map((frame) => frame.session_id)).toEqual([8]);
    client.close();
  });

  it('waits out the retry_after_ms of a rejoin refused as rate_limited', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const { client, socket } = await connected();
    await joined(client, socket, 7, 3);
    const joins = () => socket.sentOf('join_session');
    socket.receive({ type: 'error', req_id: joins()[0]?.req_id, code: 'rate_limited', message: 'over the rate', retry_after_ms: 5_000 });
    await vi.advanceTimersByTimeAsync(4_999);
    expect(joins()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(joins()[1]).toMatchObject({ session_id: 7, last_seq: 3 });
    client.close();
  });

  it('stops following a session after leave()', async () => {
    const { client, messages } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    await joined(client, socket, 7, 0);
    const leaving = client.leave(7);
    socket.receive({ type: 'new_message', message: message(1) });
    socket.receive({ type: 'left_session', req_id: socket.sentOf('leave_session')[0]?.req_id, session_id: 7 });
    await leaving;
    expect(messages).toEqual([]);
    socket.serverClose(1006);
    const next = await reconnect();
    expect(next.sentOf('join_session')).toEqual([]);
    client.close();
  });

  it('does not remember a session left while its join waited for the reply', async () => {
    const { client, messages } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    const joining = client.join(5);
    const leaving = client.leave(5);
    const join = socket.sentOf('join_session')[0];
    const leave = socket.sentOf('leave_session')[0];
    expect(leave).toMatchObject({ session_id: 5 });
    // The gateway handles both in order: joined, then left.
    socket.receive({ type: 'joined_session', req_id: join?.req_id, session_id: 5, last_seq: 3 });
    socket.receive({ type: 'left_session', req_id: leave?.req_id, session_id: 5 });
    await leaving;
    await expect(joining).resolves.toEqual({ lastSeq: 3 });
    expect(client.lastSeq(5)).toBe(0);

    socket.serverClose(1006);
    const next = await reconnect();
    expect(next.sentOf('join_session')).toEqual([]);
    next.receive({ type: 'new_message', message: message(4, 5) });
    expect(messages).toEqual([]);
    client.close();
  });

  it('sends neither the join nor a leave when a join waiting for the connection is left', async () => {
    const { client } = newClient();
    const connecting = client.connect();
    const first = await accept();
    await connecting;
    first.serverClose(1006);
    const joining = client.join(5);
    const joinFailure = joining.catch((error: unknown) => error);
    await client.leave(5);
    const second = await reconnect();
    expect(second.sent.filter((frame) => frame.type !== 'auth').map((frame) => frame.type)).toEqual([]);
    expect(await joinFailure).toMatchObject({ code: 'closed' });
    expect(client.lastSeq(5)).toBe(0);
    client.close();
  });

  it.each([
    ['refused with unavailable once its session is left', false],
    ['still on the wire when its session is left, and refused with unavailable after', true],
  ])('does not send again a join %s', async (_, leaveFirst) => {
    const { client, socket } = await connected();
    const joining = client.join(5);
    const joinFailure = joining.catch((error: unknown) => error);
    const [join] = socket.sentOf('join_session');
    const refuse = () => socket.receive({ type: 'error', req_id: join?.req_id, code: 'unavailable', message: 'persistence is down' });
    if (!leaveFirst) refuse();
    const leaving = client.leave(5);
    // The gateway handles the frames in order: the join refused, then the leave.
    if (leaveFirst) refuse();
    const [leave] = socket.sentOf('leave_session');
    socket.receive({ type: 'left_session', req_id: leave?.req_id, session_id: 5 });
    await leaving;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(socket.sentOf('join_session')).toHaveLength(1);
    expect(await joinFailure).toMatchObject({ code: 'closed' });
    expect(client.lastSeq(5)).toBe(0);
    client.close();
  });

  it('does not send a join again after a reconnect when its session was left while it was on the wire', async () => {
    const { client, socket: first } = await connected();
    const joining = client.join(5);
    const joinFailure = joining.catch((error: unknown) => error);
    void client.leave(5).catch(noop);
    first.serverClose(1006);
    const second = await reconnect();
    expect(second.sentOf('join_session')).toEqual([]);
    expect(await joinFailure).toMatchObject({ code: 'closed' });
    client.close();
  });

  it('does not deliver a message twice when a joined session is joined again', async () => {
    const { client, messages } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    await joined(client, socket, 7, 10);
    for (const seq of [11, 12]) socket.receive({ type: 'new_message', message: message(seq) });
    const joining = client.join(7);
    const join = socket.sentOf('join_session').at(-1);
    expect(join).toMatchObject({ session_id: 7, last_seq: 12 });
    // The old membership still receives 13 before the reply, which read last_seq 12; the replay
    // after the reply then runs up to 13 again.
    socket.receive({ type: 'new_message', message: message(13) });
    socket.receive({ type: 'joined_session', req_id: join?.req_id, session_id: 7, last_seq: 12 });
    socket.receive({ type: 'new_message', message: message(13) });
    await joining;
    expect(messages.map((m) => m.seq)).toEqual([11, 12, 13]);
    expect(client.lastSeq(7)).toBe(13);

    // Neither does an explicit lastSeq below what was delivered take the cursor back.
    const again = client.join(7, { lastSeq: 11 });
    const rejoin = socket.sentOf('join_session').at(-1);
    socket.receive({ type: 'joined_session', req_id: rejoin?.req_id, session_id: 7, last_seq: 13 });
    for (const seq of [12, 13, 14]) socket.receive({ type: 'new_message', message: message(seq) });
    await again;
    expect(messages.map((m) => m.seq)).toEqual([11, 12, 13, 14]);
    client.close();
  });
});

describe('reconnecting under the gateway rate', () => {
  it('rejoins 300 sessions after a reconnect paced under the rate, on one socket, without a refused frame', async () => {
    const gateway = playGateway();
    // 300 joins at 20 a second take 15 s: longer than the default request timeout.
    const { client, errors } = newClient({ requestTimeoutMs: 30_000 });
    const connecting = client.connect();
    await flush();
    await connecting;
    const sessions = range(1, 300);
    let joins = 0;
    for (const id of sessions) void client.join(id).then(() => joins++, noop);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(joins).toBe(300);
    expect(FakeSocket.all).toHaveLength(1);

    FakeSocket.last().serverClose(1006);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(FakeSocket.all).toHaveLength(2);
    const rejoins = FakeSocket.last().sentOf('join_session');
    expect(rejoins.map((frame) => frame.session_id)).toEqual(sessions);
    expect(gateway).toEqual({ refused: 0, closes: 0 });
    expect(client.state).toBe('ready');
    expect(errors).toEqual([]);
    client.close();
  });

  it('lets no frame of the app overtake the ones waiting for the rate', async () => {
    playGateway();
    const { client } = newClient({ maxFramesPerSec: 10, frameBurst: 5 });
    const connecting = client.connect();
    await flush();
    await connecting;
    // auth took one token: four joins go out at once, the fifth and the ping wait their turn.
    const joins = range(1, 5).map((id) => client.join(id));
    const pinging = client.ping();
    const socket = FakeSocket.last();
    expect(socket.sentOf('join_session')).toHaveLength(4);
    await vi.advanceTimersByTimeAsync(100);
    expect(socket.sent.slice(5).map((frame) => frame.type)).toEqual(['join_session']);
    await vi.advanceTimersByTimeAsync(100);
    expect(socket.sent.slice(5).map((frame) => frame.type)).toEqual(['join_session', 'ping']);
    await Promise.all([...joins, pinging]);
    client.close();
  });

  it('does not refill its frame bucket when the wall clock steps forward', async () => {
    playGateway();
    const { client } = newClient({ maxFramesPerSec: 1, frameBurst: 5 });
    const connecting = client.connect();
    await flush();
    await connecting;
    // auth took one token: four joins go out at once, six wait.
    for (const id of range(1, 10)) void client.join(id).catch(noop);
    const socket = FakeSocket.last();
    expect(socket.sentOf('join_session')).toHaveLength(4);
    // The device's clock is set a minute ahead (NTP): the gateway's bucket, on its monotonic clock, is not refilled.
    vi.setSystemTime(Date.now() + 60_000);
    await vi.advanceTimersByTimeAsync(1_000);
    // Before, the bucket refilled to its burst and five joins went out where one was allowed.
    expect(socket.sentOf('join_session')).toHaveLength(5);
    client.close();
  });

  it('keeps backing off while every connection is closed soon after its auth', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    // A gateway that accepts the token, then closes the socket at once, as for a flood.
    FakeSocket.onCreate = (socket) => later(() => socket.open());
    FakeSocket.onFrame = (socket, frame) => {
      if (frame.type !== 'auth') return;
      later(() => {
        socket.receive({ type: 'auth_success', req_id: frame.req_id, user: USER });
        socket.serverClose(1008, 'rate limit exceeded');
      });
    };
    const { client } = newClient();
    void client.connect();
    await vi.advanceTimersByTimeAsync(30_000);
    // Backoff ceilings 250, 500, 1000 ... 10 000 ms, half of each drawn: eleven sockets in 30 s,
    // where starting over after each auth made one every 125 ms.
    expect(FakeSocket.all.length).toBeLessThanOrEqual(12);
    expect(FakeSocket.all.length).toBeGreaterThan(5);

    // A connection that lasts starts the backoff over.
    FakeSocket.onFrame = (socket, frame) => {
      if (frame.type === 'auth') later(() => socket.receive({ type: 'auth_success', req_id: frame.req_id, user: USER }));
    };
    await vi.advanceTimersByTimeAsync(20_000);
    const lasting = FakeSocket.last();
    expect(client.state).toBe('ready');
    const opened = FakeSocket.all.length;
    lasting.serverClose(1006);
    await vi.advanceTimersByTimeAsync(125);
    expect(FakeSocket.all.length).toBe(opened + 1);
    client.close();
  });
});

describe('sending', () => {
  it('sends one message per session at a time and resends after a drop with the same client_msg_id', async () => {
    const { client } = newClient();
    const connecting = client.connect();
    const first = await accept();
    await connecting;
    const acks: unknown[] = [];
    client.on('ack', (ack) => acks.push(ack));
    const one = client.send(7, 'one');
    const two = client.send(7, 'two', { clientMsgId: 'my-id' });
    const elsewhere = client.send(8, 'other session');
    expect(first.sentOf('send_message').map((frame) => frame.content)).toEqual(['one', 'other session']);
    const oneId = first.sentOf('send_message')[0]?.client_msg_id;
    expect(oneId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

    first.serverClose(1006);
    const second = await reconnect();
    expect(second.sentOf('send_message').map((frame) => [frame.content, frame.client_msg_id])).toEqual([
      ['one', oneId],
      ['other session', expect.any(String)],
    ]);
    const [sentOne, sentOther] = second.sentOf('send_message');
    second.receive({ type: 'message_ack', req_id: sentOne?.req_id, session_id: 7, client_msg_id: oneId, message_id: 41, seq: 1 });
    await expect(one).resolves.toEqual({ messageId: 41, seq: 1, clientMsgId: oneId });
    expect(second.sentOf('send_message')[2]).toMatchObject({ content: 'two', client_msg_id: 'my-id' });
    second.receive({ type: 'message_ack', session_id: 7, client_msg_id: 'my-id', message_id: 42, seq: 2 });
    second.receive({ type: 'message_ack', session_id: 8, client_msg_id: sentOther?.client_msg_id, message_id: 43, seq: 1 });
    await expect(two).resolves.toMatchObject({ seq: 2, clientMsgId: 'my-id' });
    await expect(elsewhere).resolves.toMatchObject({ seq: 1 });
    expect(acks).toEqual([
      { sessionId: 7, clientMsgId: oneId, messageId: 41, seq: 1 },
      { sessionId: 7, clientMsgId: 'my-id', messageId: 42, seq: 2 },
      { sessionId: 8, clientMsgId: sentOther?.client_msg_id, messageId: 43, seq: 1 },
    ]);
    client.close();
  });

  it('retries rate_limited and unavailable with backoff, and rejects other errors', async () => {
    const { client } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    const sending = client.send(7, 'hello', { clientMsgId: 'h1' });
    const refuse = (code: string) => {
      const frame = socket.sentOf('send_message').at(-1);
      socket.receive({ type: 'error', req_id: frame?.req_id, client_msg_id: 'h1', code, message: code });
    };
    refuse('rate_limited');
    expect(socket.sentOf('send_message')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(250);
    expect(socket.sentOf('send_message')).toHaveLength(2);
    refuse('unavailable');
    await vi.advanceTimersByTimeAsync(500);
    expect(socket.sentOf('send_message').map((frame) => frame.client_msg_id)).toEqual(['h1', 'h1', 'h1']);
    socket.receive({ type: 'message_ack', session_id: 7, client_msg_id: 'h1', message_id: 1, seq: 1 });
    await expect(sending).resolves.toMatchObject({ seq: 1 });

    const forbidden = client.send(9, 'not mine');
    const frame = socket.sentOf('send_message').at(-1);
    socket.receive({ type: 'error', req_id: frame?.req_id, client_msg_id: frame?.client_msg_id, code: 'forbidden', message: 'no' });
    await expect(forbidden).rejects.toMatchObject({ name: 'ChatError', code: 'forbidden' });
    await expect(client.send(7, 'x'.repeat(70_000))).rejects.toMatchObject({ code: 'payload_too_large' });
    client.close();
  });

  it('rejects unacknowledged sends with closed when the client is closed', async () => {
    const { client } = newClient();
    const sending = client.send(7, 'never');
    client.close();
    await expect(sending).rejects.toMatchObject({ code: 'closed' });
    await expect(client.send(7, 'after')).rejects.toMatchObject({ code: 'closed' });
  });
});

describe('sends rejected for good', () => {
  it('carry their clientMsgId when the client is closed or gives up on the token, for sending them again', async () => {
    const { client } = newClient();
    const closing = client.send(7, 'never', { clientMsgId: 'n1' });
    client.close();
    await expect(closing).rejects.toMatchObject({ code: 'closed', clientMsgId: 'n1' });
    await expect(client.send(7, 'after', { clientMsgId: 'n2' })).rejects.toMatchObject({ code: 'closed', clientMsgId: 'n2' });

    const refused = newClient({ token: 'bad' }).client;
    const connecting = refused.connect().catch(noop);
    const sending = refused.send(7, 'lost', { clientMsgId: 'l1' }).catch((error: unknown) => error);
    await refuseAuth('invalid signature');
    await connecting;
    expect(await sending).toMatchObject({ code: 'auth_failed', clientMsgId: 'l1' });
  });
});

describe('a gateway closing for want of an auth frame in time', () => {
  it('reconnects with the same token rather than give up on it as refused', async () => {
    let delayMs = 0;
    const { client, socket, errors } = await connected({
      requestTimeoutMs: 30_000,
      token: () => new Promise<string>((resolve) => setTimeout(() => resolve('token-1'), delayMs)),
    });
    // The provider turns slow (its auth service busy), slower than the gateway's AUTH_TIMEOUT_MS.
    delayMs = 12_000;
    socket.serverClose(1006);
    await vi.advanceTimersByTimeAsync(250);
    const second = FakeSocket.last();
    second.open();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(second.sentOf('auth')).toEqual([]);
    second.receive({ type: 'error', code: 'auth_required', message: 'no auth frame in time' });
    second.serverClose(4001);
    // Before, the provider's next token was the one "refused", and the client closed with auth_failed.
    delayMs = 0;
    await vi.advanceTimersByTimeAsync(15_000);
    expect(client.state).not.toBe('closed');
    // Told, all the same: a provider always slower than the gateway would never connect.
    expect(errors.map((error) => error.code)).toContain('unavailable');
    const third = FakeSocket.last();
    expect(third).not.toBe(second);
    third.open();
    await flush();
    third.receive({ type: 'auth_success', req_id: third.sentOf('auth').at(-1)?.req_id, user: USER });
    await flush();
    expect(client.state).toBe('ready');
    client.close();
  });

  it('stays closed when a listener of the error it reports closes the client', async () => {
    const { client, errors } = newClient();
    client.on('error', () => client.close());
    void client.connect().catch(noop);
    const socket = FakeSocket.last();
    socket.open();
    await flush();
    socket.receive({ type: 'error', code: 'auth_required', message: 'no auth frame in time' });
    socket.serverClose(4001);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(errors).toMatchObject([{ code: 'unavailable' }]);
    // Before, the reconnect was armed after the listener had closed the client: it connected again.
    expect(client.state).toBe('closed');
    expect(FakeSocket.all).toHaveLength(1);
  });

  it('keeps the one socket of a connect() that a listener of that error makes after close()', async () => {
    const { client } = newClient();
    client.on('error', () => {
      client.close();
      void client.connect().catch(noop);
    });
    void client.connect().catch(noop);
    const first = FakeSocket.last();
    first.open();
    await flush();
    first.receive({ type: 'error', code: 'auth_required', message: 'no auth frame in time' });
    first.serverClose(4001);
    const second = FakeSocket.last();
    expect(second).not.toBe(first);
    await vi.advanceTimersByTimeAsync(1_000);
    // Before, the reconnect armed after the listener replaced that socket, leaving it open and unowned.
    expect(FakeSocket.all).toEqual([first, second]);
    await accept(second);
    expect(client.state).toBe('ready');
    client.close();
  });
});

describe('a token of another user', () => {
  it("closes the client rather than rejoin and resend the first user's sessions and messages under it", async () => {
    let token = 'token-of-5';
    const { client, socket } = await connected({ token: () => token });
    const failures: Error[] = [];
    client.on('auth_failed', (error) => failures.push(error));
    await joined(client, socket, 7, 5);
    const sending = client.send(7, 'for user 5 only', { clientMsgId: 'u5' }).catch((error: unknown) => error);
    await flush();
    // Another sign-in in the same app changed what the token provider hands out.
    token = 'token-of-6';
    socket.serverClose(1006);
    await vi.advanceTimersByTimeAsync(250);
    const second = FakeSocket.last();
    second.open();
    await flush();
    const auth = second.sentOf('auth').at(-1);
    second.receive({ type: 'auth_success', req_id: auth?.req_id, user: { id: 6, username: 'sam', role: 'agent' } });
    await flush();

    expect(second.sent.filter((frame) => frame.type !== 'auth')).toEqual([]);
    expect(client.state).toBe('closed');
    expect(failures[0]).toMatchObject({ code: 'auth_failed' });
    expect(await sending).toMatchObject({ code: 'auth_failed', clientMsgId: 'u5' });
  });

  it('starts over on connect() after close(): nothing of before is joined again', async () => {
    const { client, socket } = await connected();
    await joined(client, socket, 7, 5);
    client.close();
    const connecting = client.connect();
    const again = await accept();
    await connecting;
    await flush();
    expect(again.sentOf('join_session')).toEqual([]);
    expect(client.lastSeq(7)).toBe(0);
    client.close();
  });
});

describe('requests', () => {
  it('repeats safe requests after a drop, but not create_session', async () => {
    const { client } = newClient();
    const connecting = client.connect();
    const first = await accept();
    await connecting;
    const creating = client.createSession('help');
    const reading = client.history(7, { limit: 2 });
    first.serverClose(1006);
    await expect(creating).rejects.toMatchObject({ code: 'closed' });
    const second = await reconnect();
    const request = second.sentOf('history')[0];
    expect(request).toMatchObject({ session_id: 7, limit: 2 });
    second.receive({ type: 'history', req_id: request?.req_id, session_id: 7, messages: [message(1)], has_more: false });
    await expect(reading).resolves.toEqual({ messages: [message(1)], hasMore: false });
    client.close();
  });

  it('pages sessions, and takes a gateway older than paging for one that cannot page yet', async () => {
    const { client, socket } = await connected();
    const session = { id: 42, customer_id: 5, status: 'open', subject: null, created_at: '2026-01-01T00:00:00.000Z', last_seq: 0 };
    const page = client.listSessionsPage({ limit: 1, beforeId: 43 });
    await flush();
    const asked = socket.sentOf('list_sessions').at(-1);
    expect(asked).toMatchObject({ limit: 1, before_id: 43 });
    socket.receive({ type: 'sessions', req_id: asked?.req_id, sessions: [session], has_more: true });
    await expect(page).resolves.toEqual({ sessions: [session], hasMore: true });
    // An older gateway: no has_more, and before_id ignored (its answer is the first page again).
    const first = client.listSessionsPage({ limit: 1 });
    await flush();
    socket.receive({ type: 'sessions', req_id: socket.sentOf('list_sessions').at(-1)?.req_id, sessions: [session] });
    await expect(first).resolves.toEqual({ sessions: [session], hasMore: false });
    const next = client.listSessionsPage({ limit: 1, beforeId: 42 });
    await flush();
    socket.receive({ type: 'sessions', req_id: socket.sentOf('list_sessions').at(-1)?.req_id, sessions: [session] });
    await expect(next).rejects.toMatchObject({ code: 'unavailable' });
    client.close();
  });

  it('rejects with the error code, or timeout without an answer', async () => {
    const { client } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    const joining = client.join(99);
    socket.receive({ type: 'error', req_id: socket.sentOf('join_session')[0]?.req_id, code: 'not_found', message: 'no session 99' });
    await expect(joining).rejects.toMatchObject({ code: 'not_found', message: 'no session 99' });
    const pinging = client.ping();
    const outcome = expect(pinging).rejects.toMatchObject({ code: 'timeout' });
    await vi.advanceTimersByTimeAsync(10_000);
    await outcome;
    client.close();
  });

  it('rejects create_session at once when retry_after_ms ends after the deadline, and waits it out otherwise', async () => {
    const { client } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    const refuse = (retryAfterMs: number) => {
      const frame = socket.sentOf('create_session').at(-1);
      const message = 'at most 30 new sessions per 60 minutes; try again later';
      socket.receive({ type: 'error', req_id: frame?.req_id, code: 'rate_limited', message, retry_after_ms: retryAfterMs });
    };

    const overLimit = client.createSession('help');
    refuse(3_599_000);
    await expect(overLimit).rejects.toMatchObject({ code: 'rate_limited', retryAfterMs: 3_599_000 });
    expect(socket.sentOf('create_session')).toHaveLength(1);

    const overRate = client.createSession('again');
    refuse(2_000);
    await vi.advanceTimersByTimeAsync(1_999);
    expect(socket.sentOf('create_session')).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(socket.sentOf('create_session')).toHaveLength(3);
    const frame = socket.sentOf('create_session').at(-1);
    const session = { id: 5, customer_id: 1, status: 'open', subject: 'again', created_at: new Date(0).toISOString() };
    socket.receive({ type: 'session_created', req_id: frame?.req_id, session });
    await expect(overRate).resolves.toMatchObject({ id: 5 });
    client.close();
  });

  it.each([
    ['', false],
    [', also when another session is left between the replies', true],
  ])('replays what two joins of a session sent at once could leave between their replies%s', async (_name, leaveBetween) => {
    const { client, socket, messages } = await connected();
    const first = client.join(7);
    const second = client.join(7);
    const [j1, j2] = socket.sentOf('join_session');
    expect(j2).not.toHaveProperty('last_seq');
    socket.receive({ type: 'joined_session', req_id: j1?.req_id, session_id: 7, last_seq: 10 });
    // Matching the joins to cancel, a leave must read the second one as it was sent (without
    // last_seq), not as it would be built now (from the cursor the first reply set).
    const leaving = leaveBetween ? client.leave(8) : undefined;
    // Seq 11 was committed between the two reads: the second membership starts after it, and the
    // first was replaced before its event came.
    socket.receive({ type: 'joined_session', req_id: j2?.req_id, session_id: 7, last_seq: 11 });
    await Promise.all([first, second]);
    const rejoin = socket.sentOf('join_session')[2];
    expect(rejoin).toMatchObject({ session_id: 7, last_seq: 10 });
    socket.receive({ type: 'joined_session', req_id: rejoin?.req_id, session_id: 7, last_seq: 11 });
    socket.receive({ type: 'new_message', message: message(11) });
    socket.receive({ type: 'new_message', message: message(12) });
    expect(messages.map((m) => m.seq)).toEqual([11, 12]);
    if (leaving) {
      socket.receive({ type: 'left_session', req_id: socket.sentOf('leave_session')[0]?.req_id, session_id: 8 });
      await leaving;
    }
    client.close();
  });

  it('does not rejoin after two joins at once when nothing fell between their replies', async () => {
    const { client, socket } = await connected();
    const first = client.join(7);
    const second = client.join(7);
    const [j1, j2] = socket.sentOf('join_session');
    socket.receive({ type: 'joined_session', req_id: j1?.req_id, session_id: 7, last_seq: 10 });
    socket.receive({ type: 'joined_session', req_id: j2?.req_id, session_id: 7, last_seq: 10 });
    await Promise.all([first, second]);
    expect(socket.sentOf('join_session')).toHaveLength(2);
    client.close();
  });

  it('undoes a join that timed out with a leave, which a join that follows waits for', async () => {
    const { client, socket } = await connected({ requestTimeoutMs: 1_000 });
    const joining = client.join(7);
    const outcome = expect(joining).rejects.toMatchObject({ code: 'timeout' });
    await vi.advanceTimersByTimeAsync(1_000);
    await outcome;
    // The gateway may still carry the join out: its reply comes too late to be matched, and the
    // membership it made delivers messages the client drops. A leave right behind it undoes it.
    const types = () => socket.sent.filter((frame) => frame.type.endsWith('_session')).map((frame) => frame.type);
    expect(types()).toEqual(['join_session', 'leave_session']);
    expect(socket.sentOf('leave_session')[0]).toMatchObject({ session_id: 7 });
    // A join at once goes out only once the leave is answered, so that it is handled after it.
    const rejoining = client.join(7);
    await flush();
    expect(types()).toEqual(['join_session', 'leave_session']);
    const [late, leave] = socket.sent.filter((frame) => frame.type.endsWith('_session'));
    socket.receive({ type: 'joined_session', req_id: late?.req_id, session_id: 7, last_seq: 5 });
    socket.receive({ type: 'left_session', req_id: leave?.req_id, session_id: 7 });
    await flush();
    expect(types()).toEqual(['join_session', 'leave_session', 'join_session']);
    socket.receive({ type: 'joined_session', req_id: socket.sentOf('join_session')[1]?.req_id, session_id: 7, last_seq: 6 });
    await expect(rejoining).resolves.toEqual({ lastSeq: 6 });
    client.close();
  });

  it('undoes a join whose retry was still on its way at the deadline', async () => {
    const { client, socket } = await connected({ requestTimeoutMs: 1_000 });
    const joining = client.join(7);
    const outcome = expect(joining).rejects.toMatchObject({ code: 'timeout' });
    // Refused once (persistence slow): the retry goes out and is not answered before the deadline.
    socket.receive({
      type: 'error',
      req_id: socket.sentOf('join_session')[0]?.req_id,
      code: 'unavailable',
      message: 'persistence is slow',
    });
    await vi.advanceTimersByTimeAsync(900);
    expect(socket.sentOf('join_session')).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(100);
    // It rejected with the first attempt's `unavailable` before, and nothing undid the second.
    await outcome;
    expect(socket.sentOf('leave_session')).toMatchObject([{ session_id: 7 }]);
    client.close();
  });

  it('does not undo a timed-out join of a session it holds', async () => {
    const { client, socket } = await connected({ requestTimeoutMs: 1_000 });
    await joined(client, socket, 7, 5);
    const outcome = expect(client.join(7)).rejects.toMatchObject({ code: 'timeout' });
    await vi.advanceTimersByTimeAsync(1_000);
    await outcome;
    expect(socket.sentOf('leave_session')).toEqual([]);
    client.close();
  });

  it('sends a join after a leave of the same session that waits out rate_limited, not before it', async () => {
    const { client, socket } = await connected();
    await joined(client, socket, 7, 5);
    const leaving = client.leave(7);
    const leave = socket.sentOf('leave_session')[0];
    socket.receive({ type: 'error', req_id: leave?.req_id, code: 'rate_limited', message: 'too fast', retry_after_ms: 100 });
    const rejoining = client.join(7);
    await vi.advanceTimersByTimeAsync(5_000);
    // The join waits: sent before the leave's retry, it would have been ended by it.
    const types = () => socket.sent.filter((frame) => frame.type.endsWith('_session')).map((frame) => frame.type);
    expect(types()).toEqual(['join_session', 'leave_session', 'leave_session']);
    socket.receive({ type: 'left_session', req_id: socket.sentOf('leave_session')[1]?.req_id, session_id: 7 });
    await expect(leaving).resolves.toBeUndefined();
    await flush();
    expect(types()).toEqual(['join_session', 'leave_session', 'leave_session', 'join_session']);
    socket.receive({ type: 'joined_session', req_id: socket.sentOf('join_session')[1]?.req_id, session_id: 7, last_seq: 6 });
    await expect(rejoining).resolves.toEqual({ lastSeq: 6 });
    client.close();
  });

  it('sends a join after every leave of the session still on its way, not only the newest', async () => {
    const { client, socket } = await connected();
    await joined(client, socket, 7, 5);
    const types = () => socket.sent.filter((frame) => frame.type.endsWith('_session')).map((frame) => frame.type);
    const first = client.leave(7);
    socket.receive({
      type: 'error',
      req_id: socket.sentOf('leave_session')[0]?.req_id,
      code: 'rate_limited',
      message: 'too fast',
      retry_after_ms: 100,
    });
    const second = client.leave(7);
    await flush();
    socket.receive({ type: 'left_session', req_id: socket.sentOf('leave_session')[1]?.req_id, session_id: 7 });
    await expect(second).resolves.toBeUndefined();
    const rejoining = client.join(7);
    await vi.advanceTimersByTimeAsync(5_000);
    // Before, the join went out as soon as the newest leave was answered, ahead of the first
    // one's retry, which then ended the membership it made.
    expect(types()).toEqual(['join_session', 'leave_session', 'leave_session', 'leave_session']);
    socket.receive({ type: 'left_session', req_id: socket.sentOf('leave_session')[2]?.req_id, session_id: 7 });
    await expect(first).resolves.toBeUndefined();
    await flush();
    expect(types()).toEqual(['join_session', 'leave_session', 'leave_session', 'leave_session', 'join_session']);
    socket.receive({ type: 'joined_session', req_id: socket.sentOf('join_session')[1]?.req_id, session_id: 7, last_seq: 6 });
    await expect(rejoining).resolves.toEqual({ lastSeq: 6 });
    client.close();
  });

  it('does not carry a join waiting for a leave over close() and connect()', async () => {
    const { client, socket } = await connected();
    await joined(client, socket, 7, 0);
    void client.leave(7).catch(noop);
    const rejoining = client.join(7);
    const outcome = expect(rejoining).rejects.toMatchObject({ code: 'closed' });
    client.close();
    const connecting = client.connect();
    const next = await accept();
    await connecting;
    await flush();
    // Before, the join from before the close went out on the new connection, perhaps another user's.
    expect(next.sentOf('join_session')).toEqual([]);
    await outcome;
    client.close();
  });

  it('takes Infinity for requestTimeoutMs as no deadline, where a timer would have fired at once', async () => {
    const { client, socket } = await connected({ requestTimeoutMs: Number.POSITIVE_INFINITY });
    const pinging = client.ping();
    // Less than the heartbeat interval, after which the client would send a ping of its own.
    await vi.advanceTimersByTimeAsync(5_000);
    expect(client.state).toBe('ready');
    socket.receive({ type: 'pong', req_id: socket.sentOf('ping').at(-1)?.req_id });
    await pinging;
    client.close();
  });

  it('reports server errors that answer no request', async () => {
    const { client, errors } = newClient();
    const connecting = client.connect();
    const socket = await accept();
    await connecting;
    socket.receive({ type: 'error', code: 'invalid_message', message: 'frame is not valid JSON' });
    expect(errors).toMatchObject([{ code: 'invalid_message' }]);
    client.close();
  });
});

describe("a socket given up under Node's ws", () => {
  /** `ws`'s socket: close() waits up to 30 s for the server's close frame, on a timer that holds the process; terminate() cuts it. */
  class NodeSocket extends FakeSocket {
    terminated = 0;
    terminate(): void {
      this.terminated++;
    }
  }

  it('is cut a second after its close, so that a dead connection does not hold the process for 30 s', async () => {
    const { client } = newClient({ WebSocket: NodeSocket });
    const connecting = client.connect();
    const socket = (await accept()) as NodeSocket;
    await connecting;
    client.close();
    expect(socket.closedWith).toBe(4000);
    expect(socket.terminated).toBe(0);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(socket.terminated).toBe(1);
  });

  it('is cut the same way when the watchdog finds it dead', async () => {
    const { client } = newClient({ WebSocket: NodeSocket });
    const connecting = client.connect();
    const socket = (await accept()) as NodeSocket;
    await connecting;
    // A quiet heartbeat interval, then a probe nobody answers.
    await vi.advanceTimersByTimeAsync(25_000 + 10_000);
    expect(socket.closedWith).toBe(4000);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(socket.terminated).toBe(1);
    client.close();
  });
});

describe('malformed frames from the server', () => {
  it('drops a new_message without a message or its numbers, reports it, and delivers the next one', async () => {
    const { client, messages, errors, socket } = await connected();
    await joined(client, socket, 7, 0);
    const malformed: Frame[] = [
      { type: 'new_message' },
      { type: 'new_message', message: null },
      { type: 'new_message', message: { ...message(1), seq: '1' } },
      { type: 'new_message', message: { ...message(1), session_id: null } },
    ];
    for (const frame of malformed) expect(() => socket.receive(frame)).not.toThrow();
    expect(errors.map((error) => error.code)).toEqual(malformed.map(() => 'invalid_message'));
    socket.receive({ type: 'new_message', message: message(1) });
    expect(messages.map((m) => m.seq)).toEqual([1]);
    // The cursor stayed a number: the rejoin after a reconnect starts from the last seq delivered.
    socket.serverClose(1006);
    const next = await reconnect();
    expect(next.sentOf('join_session')[0]).toMatchObject({ session_id: 7, last_seq: 1 });
    client.close();
  });

  it('drops a joined_session without a numeric last_seq rather than set a cursor from it', async () => {
    const { client, errors, socket } = await connected();
    const joining = client.join(7);
    const outcome = expect(joining).rejects.toMatchObject({ code: 'timeout' });
    const [join] = socket.sentOf('join_session');
    expect(() => socket.receive({ type: 'joined_session', req_id: join?.req_id, session_id: 7, last_seq: 'many' })).not.toThrow();
    expect(errors).toMatchObject([{ code: 'invalid_message' }]);
    expect(client.lastSeq(7)).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    await outcome;
    // The join that timed out is undone with a leave, which the next join waits for.
    socket.receive({ type: 'left_session', req_id: socket.sentOf('leave_session')[0]?.req_id, session_id: 7 });
    await flush();
    // The client carries on: the next join is answered and remembered.
    await expect(joined(client, socket, 7, 4)).resolves.toEqual({ lastSeq: 4 });
    expect(client.lastSeq(7)).toBe(4);
    client.close();
  });

  it('sends again, on a new connection, a message whose ack lacks its numbers, rather than resolve it without them or hold the session', async () => {
    const { client, errors, socket } = await connected();
    let settled: unknown;
    const sending = client.send(7, 'hello', { clientMsgId: 'a1' });
    const next = client.send(7, 'next', { clientMsgId: 'a2' });
    void sending.then((result) => {
      settled = result;
    });
    await flush();
    // An ack for no message waiting is only reported.
    socket.receive({ type: 'message_ack', session_id: 7, client_msg_id: 'other', message_id: 12 });
    expect(socket.closedWith).toBeUndefined();
    socket.receive({ type: 'message_ack', session_id: 7, client_msg_id: 'a1', message_id: 12, seq: '3' });
    await flush();
    // Before, send() resolved with seq undefined; with the ack dropped alone, 'next' would have waited for ever.
    expect(settled).toBeUndefined();
    expect(errors.map((error) => error.code)).toEqual(['invalid_message', 'invalid_message']);
    expect(socket.closedWith).toBe(4000);
    socket.serverClose(4000);
    const second = await reconnect();
    const resent = second.sentOf('send_message');
    expect(resent.map((frame) => frame.client_msg_id)).toEqual(['a1']);
    second.receive({ type: 'message_ack', req_id: resent[0]?.req_id, session_id: 7, client_msg_id: 'a1', message_id: 12, seq: 3 });
    await expect(sending).resolves.toEqual({ messageId: 12, seq: 3, clientMsgId: 'a1' });
    await flush();
    const following = second.sentOf('send_message').at(-1);
    expect(following?.client_msg_id).toBe('a2');
    second.receive({ type: 'message_ack', req_id: following?.req_id, session_id: 7, client_msg_id: 'a2', message_id: 13, seq: 4 });
    await expect(next).resolves.toMatchObject({ seq: 4 });
    client.close();
  });

  it('gives up the connection for an ack that answers a send by its req_id alone, rather than hold the session', async () => {
    const { client, errors, socket } = await connected();
    const sending = expect(client.send(7, 'hello', { clientMsgId: 'a1' })).rejects.toMatchObject({ code: 'closed' });
    await flush();
    const [frame] = socket.sentOf('send_message');
    // Neither its session nor its client_msg_id: only the req_id says which send it answers.
    socket.receive({ type: 'message_ack', req_id: frame?.req_id, message_id: 12, seq: 3 });
    expect(errors.map((error) => error.code)).toEqual(['invalid_message']);
    expect(socket.closedWith).toBe(4000);
    client.close();
    await sending;
  });

  it('fails a request at once on a reply without what it resolves with, rather than hand the app undefined', async () => {
    const { client, errors, socket } = await connected();
    const reading = client.history(7);
    const listing = client.listSessions();
    const creating = client.createSession('help');
    await flush();
    socket.receive({ type: 'history', req_id: socket.sentOf('history')[0]?.req_id, session_id: 7, has_more: false });
    socket.receive({ type: 'sessions', req_id: socket.sentOf('list_sessions')[0]?.req_id, sessions: [{ id: 'x' }], has_more: false });
    socket.receive({ type: 'session_created', req_id: socket.sentOf('create_session')[0]?.req_id });
    await expect(reading).rejects.toMatchObject({
      code: 'invalid_message',
      message: expect.stringContaining('history reply was malformed'),
    });
    await expect(listing).rejects.toMatchObject({ code: 'invalid_message' });
    await expect(creating).rejects.toMatchObject({ code: 'invalid_message' });
    expect(errors.map((error) => error.code)).toEqual(['invalid_message', 'invalid_message', 'invalid_message']);
    // The client carries on.
    const again = client.history(7);
    await flush();
    socket.receive({
      type: 'history',
      req_id: socket.sentOf('history').at(-1)?.req_id,
      session_id: 7,
      messages: [message(1)],
      has_more: false,
    });
    await expect(again).resolves.toEqual({ messages: [message(1)], hasMore: false });
    client.close();
  });

  it('treats an auth_success without a user as a failed handshake, and connects again', async () => {
    const { client, errors } = newClient();
    const connecting = client.connect();
    const first = FakeSocket.last();
    first.open();
    await flush();
    expect(() => first.receive({ type: 'auth_success', req_id: 'auth' })).not.toThrow();
    expect(errors).toMatchObject([{ code: 'invalid_message' }]);
    expect(first.closedWith).toBe(4000);
    expect(client.state).toBe('connecting');
    await reconnect();
    await connecting;
    expect(client.state).toBe('ready');
    expect(client.user).toEqual(USER);
    client.close();
  });
});

describe('authentication failures', () => {
  it('gets a fresh token from the provider after 4001 and carries on', async () => {
    const tokens = ['expired', 'fresh'];
    const provider = vi.fn(() => tokens.shift() ?? 'none');
    const { client } = newClient({ token: provider });
    const connecting = client.connect();
    const first = await refuseAuth('token expired');
    expect(first.sentOf('auth')[0]).toMatchObject({ token: 'expired' });
    await flush();
    const second = await accept(FakeSocket.last());
    await connecting;
    expect(second.sentOf('auth')[0]).toMatchObject({ token: 'fresh' });
    expect(provider).toHaveBeenCalledTimes(2);
    expect(client.state).toBe('ready');
    client.close();
  });

  it('asks the provider again, rather than send the token it fetched after 4001, when no gateway answered for a while', async () => {
    const tokens = ['t1', 't2', 't3'];
    const provider = vi.fn(() => tokens.shift() ?? 'none');
    const { client, socket } = await connected({ token: provider });
    socket.receive({ type: 'error', code: 'auth_failed', message: 'token expired' });
    socket.serverClose(4001);
    await flush();
    expect(provider).toHaveBeenCalledTimes(2);
    // For five minutes no socket opens (the gateways unreachable), and the handshake timer drops each one.
    await vi.advanceTimersByTimeAsync(300_000);
    expect(FakeSocket.all.length).toBeGreaterThan(3);
    // Then the next socket made opens.
    const before = FakeSocket.all.length;
    while (FakeSocket.all.length === before) await vi.advanceTimersByTimeAsync(10);
    const last = FakeSocket.last();
    last.open();
    await flush();
    // Before, t2, which may have expired meanwhile: its refusal closed the client for good.
    expect(last.sentOf('auth')).toMatchObject([{ token: 't3' }]);
    last.receive({ type: 'auth_success', req_id: 'auth', user: USER });
    await flush();
    expect(client.state).toBe('ready');
    client.close();
  });

  it('tells the app when the provider fails after a 4001, and connects once it answers again', async () => {
    let calls = 0;
    const provider = vi.fn(() => {
      calls++;
      if (calls === 2) throw new Error('auth service restarting');
      return `t${calls}`;
    });
    const { client, socket, errors } = await connected({ token: provider });
    socket.receive({ type: 'error', code: 'auth_failed', message: 'token expired' });
    socket.serverClose(4001);
    await flush();
    // Before, nothing: the app heard of the failing provider only if a later socket failed too.
    expect(errors.map((error) => [error.code, error.message])).toEqual([
      ['unavailable', 'the token provider failed: auth service restarting'],
    ]);
    const before = FakeSocket.all.length;
    while (FakeSocket.all.length === before) await vi.advanceTimersByTimeAsync(10);
    const next = await accept(FakeSocket.last());
    expect(next.sentOf('auth')).toMatchObject([{ token: 't3' }]);
    expect(client.state).toBe('ready');
    client.close();
  });

  /** An unsigned JWT-shaped token expiring at `expiresAtMs` (the client reads only its `exp`). */
  const tokenExpiringAt = (name: string, expiresAtMs: number) => {
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    return `${encode({ alg: 'EdDSA' })}.${encode({ sub: name, exp: Math.floor(expiresAtMs / 1000) })}.sig`;
  };

  it('waits out a provider that hands back the refused token while the local clock says it is valid, then connects', async () => {
    // A cache trusting a clock behind the gateway's: the token expired for the gateway, not for it.
    const stale = tokenExpiringAt('stale', Date.now() + 30_000);
    const fresh = tokenExpiringAt('fresh', Date.now() + 3_600_000);
    let handBack = 3;
    const provider = vi.fn(() => (handBack-- > 0 ? stale : fresh));
    const { client, errors } = newClient({ token: provider });
    const failures: Error[] = [];
    client.on('auth_failed', (error) => failures.push(error));
    const connecting = client.connect();
    await refuseAuth('token expired');
    for (let waited = 0; FakeSocket.all.length === 1 && waited < 20_000; waited += 10) await vi.advanceTimersByTimeAsync(10);
    // Before: closed with auth_failed at the first token handed back.
    expect(failures).toEqual([]);
    // The first connection's, two handed back after the 4001, then a fresh one.
    expect(provider).toHaveBeenCalledTimes(4);
    expect(errors.map((error) => error.message)).toEqual(Array(2).fill('the token provider handed back the token the gateway refused'));
    // No socket was opened to send a token known to be refused.
    expect(FakeSocket.all).toHaveLength(2);
    const second = await accept(FakeSocket.last());
    await connecting;
    expect(second.sentOf('auth')[0]?.token).toBe(fresh);
    client.close();
  });

  it('waits for a fresh token through a provider that fails meanwhile, without connecting, and for 5 minutes at most', async () => {
    // A clock hours behind: by the local clock the token handed back stays valid all along.
    const stale = tokenExpiringAt('stale', Date.now() + 6 * 3_600_000);
    let calls = 0;
    const provider = vi.fn(() => {
      calls++;
      if (calls === 3) throw new Error('auth service restarting');
      return stale;
    });
    const { client, errors } = newClient({ token: provider });
    const failures: Error[] = [];
    client.on('auth_failed', (error) => failures.push(error));
    const outcome = expect(client.connect()).rejects.toMatchObject({ code: 'auth_failed' });
    await refuseAuth('token expired');
    await vi.advanceTimersByTimeAsync(4 * 60_000);
    // Still waiting, the provider's failure included, and no socket opened to send the token refused.
    expect(failures).toEqual([]);
    expect(errors.map((error) => error.message)).toContain('the token provider failed: auth service restarting');
    expect(provider.mock.calls.length).toBeGreaterThan(10);
    expect(FakeSocket.all).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2 * 60_000);
    await outcome;
    expect(failures).toMatchObject([{ code: 'auth_failed' }]);
    expect(client.state).toBe('closed');
    const asked = provider.mock.calls.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(provider.mock.calls.length).toBe(asked);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it.each([
    ['a provider that hands back the refused token the local clock too says expired', Date.now() - 120_000, 'token expired', true],
    // The gateway closes 5 s after the expiry (its skew allowance): by then the local clock agrees.
    ['a provider that hands back the refused token the local clock says expired a moment ago', Date.now() - 5_000, 'token expired', true],
    [
      'a provider that hands back the refused token at once when it was refused for another reason than its expiry',
      Date.now() + 3_600_000,
      'signature verification failed',
      true,
    ],
    ['a fixed token refused as expired at once, whatever the local clock says', Date.now() + 3_600_000, 'token expired', false],
  ])('gives up on %s', async (_name, expiresAtMs, refusal, fromProvider) => {
    const token = tokenExpiringAt('old', expiresAtMs);
    const { client } = newClient({ token: fromProvider ? () => token : token });
    const outcome = expect(client.connect()).rejects.toMatchObject({ code: 'auth_failed', message: refusal });
    await refuseAuth(refusal);
    await flush();
    await outcome;
    expect(client.state).toBe('closed');
  });

  it('gives up when the token is refused again: state closed and auth_failed', async () => {
    const { client, states } = newClient({ token: 'bad' });
    const failures: Error[] = [];
    client.on('auth_failed', (error) => failures.push(error));
    const connecting = client.connect();
    const outcome = expect(connecting).rejects.toMatchObject({ code: 'auth_failed', message: 'invalid signature' });
    await refuseAuth('invalid signature');
    await flush();
    await outcome;
    expect(FakeSocket.all).toHaveLength(1);
    expect(failures).toMatchObject([{ code: 'auth_failed' }]);
    expect(states.at(-1)).toBe('closed');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.all).toHaveLength(1);
  });
});

describe('a state listener closing the client on a 4001', () => {
  it('asks the provider nothing more and leaves no timer', async () => {
    const provider = vi.fn(() => 'token-1');
    const { client, socket } = await connected({ token: provider });
    client.on('state', (state) => {
      if (state === 'reconnecting') client.close();
    });
    const asked = provider.mock.calls.length;
    socket.serverClose(4001);
    await flush();
    expect(client.state).toBe('closed');
    expect(provider.mock.calls.length).toBe(asked);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('an auth frame no gateway would take', () => {
  it('refuses a token over the protocol bound, with auth_failed at once, rather than send it on every connection', async () => {
    // The bound is the gateway's.
    expect(clientFrameSchemas.auth.safeParse({ type: 'auth', token: 'x'.repeat(MAX_TOKEN_CHARS) }).success).toBe(true);
    expect(clientFrameSchemas.auth.safeParse({ type: 'auth', token: 'x'.repeat(MAX_TOKEN_CHARS + 1) }).success).toBe(false);
    const { client } = newClient({ token: async () => 'x'.repeat(MAX_TOKEN_CHARS + 1) });
    const outcome = expect(client.connect()).rejects.toMatchObject({ code: 'auth_failed', message: expect.stringContaining('16384') });
    FakeSocket.last().open();
    await flush();
    await outcome;
    expect(FakeSocket.last().sentOf('auth')).toEqual([]);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it('closes with auth_failed when the gateway refuses the auth frame itself, and does not reconnect to be refused again', async () => {
    const { client } = newClient();
    const failures: Error[] = [];
    client.on('auth_failed', (error) => failures.push(error));
    const outcome = expect(client.connect()).rejects.toMatchObject({ code: 'auth_failed' });
    const socket = FakeSocket.last();
    socket.open();
    await flush();
    const auth = socket.sentOf('auth').at(-1);
    socket.receive({ type: 'error', req_id: auth?.req_id, code: 'payload_too_large', message: 'frame over 4096 bytes' });
    await outcome;
    expect(failures).toMatchObject([{ message: 'the gateway refused the auth frame (payload_too_large): frame over 4096 bytes' }]);
    expect(client.state).toBe('closed');
    // Before, it reconnected with backoff for ever, and connect() never settled.
    await vi.advanceTimersByTimeAsync(30_000);
    expect(FakeSocket.all).toHaveLength(1);
  });
  it('takes a payload_too_large without req_id before its auth is answered for the auth frame refused', async () => {
    const { client } = newClient();
    const outcome = expect(client.connect()).rejects.toMatchObject({ code: 'auth_failed' });
    const socket = FakeSocket.last();
    socket.open();
    await flush();
    // The gateway counts an unauthenticated socket's bytes before the frame is whole: no req_id, then 1009.
    socket.receive({ type: 'error', code: 'payload_too_large', message: 'frame over 65536 bytes' });
    socket.serverClose(1009);
    await outcome;
    expect(client.state).toBe('closed');
    await vi.advanceTimersByTimeAsync(30_000);
    expect(FakeSocket.all).toHaveLength(1);
  });
});

describe('options that would stop the client', () => {
  it.each([
    ['maxFramesPerSec', 0],
    ['frameBurst', 0.5],
    ['requestTimeoutMs', Number.NaN],
    ['requestTimeoutMs', 0],
    ['maxFrameBytes', -1],
    ['minReconnectDelayMs', -5],
    // A first delay of 0 doubles to 0 for ever: a hot loop against a gateway that refuses connections.
    ['minReconnectDelayMs', 0],
    ['maxReconnectDelayMs', 0],
  ] as const)('refuses %s: %s when the client is made', (name, value) => {
    expect(() => newClient({ [name]: value })).toThrow(RangeError);
  });

  it('takes the limits that only tune it', () => {
    expect(() =>
      newClient({
        maxFramesPerSec: 0.5,
        frameBurst: 1,
        requestTimeoutMs: Number.POSITIVE_INFINITY,
        minReconnectDelayMs: 1,
        maxReconnectDelayMs: 1,
        refreshBeforeExpiryMs: 0,
      }),
    ).not.toThrow();
  });
});

describe('a token provider returning something other than a string', () => {
  it('closes the client with auth_failed at once, rather than reconnect for ever', async () => {
    const token = (async () => ({ access_token: 'token-1' })) as unknown as () => Promise<string>;
    const { client } = newClient({ token });
    const failures: Error[] = [];
    client.on('auth_failed', (error) => failures.push(error));
    const outcome = expect(client.connect()).rejects.toMatchObject({
      code: 'auth_failed',
      message: 'the token provider returned an object, not a token string',
    });
    FakeSocket.last().open();
    await flush();
    await outcome;
    expect(failures).toHaveLength(1);
    expect(client.state).toBe('closed');
    expect(FakeSocket.all).toHaveLength(1);
  });

  it.each([
    ['undefined', undefined],
    ['null', null],
    ['an empty string', ''],
    ['a thrown ChatError', new ChatError('unavailable', 'offline')],
  ])('takes %s from the provider as a passing failure: it reconnects and asks again', async (_, first) => {
    let calls = 0;
    const token = vi.fn(() => {
      if (++calls > 1) return 'token-1';
      if (first instanceof Error) throw first;
      return first as string;
    });
    const { client, errors } = newClient({ token });
    const connecting = client.connect();
    FakeSocket.last().open();
    await flush();
    expect(errors[0]).toMatchObject({ code: 'unavailable' });
    await vi.advanceTimersByTimeAsync(250);
    await accept();
    await connecting;
    expect(client.state).toBe('ready');
    client.close();
  });

  it('closes the client when the provider returns something else for a refresh', async () => {
    let calls = 0;
    const jwt = (expiresInS: number) => {
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      const now = Math.floor(Date.now() / 1000);
      return `${encode({ alg: 'EdDSA' })}.${encode({ sub: 'u', iat: now, exp: now + expiresInS })}.sig`;
    };
    const token = (async () => (++calls === 1 ? jwt(10) : { access_token: 'x' })) as unknown as () => Promise<string>;
    const { client } = await connected({ token });
    const failures: Error[] = [];
    client.on('auth_failed', (error) => failures.push(error));
    await vi.advanceTimersByTimeAsync(6_000);
    // Before, it was asked again every few seconds until the token ran out.
    expect(failures).toMatchObject([{ code: 'auth_failed', message: 'the token provider returned an object, not a token string' }]);
    expect(client.state).toBe('closed');
  });
});

describe('token provider failures', () => {
  it('reconnects with backoff while the provider fails, instead of giving up, and carries on once it answers', async () => {
    let failing = true;
    const provider = vi.fn(() => {
      if (failing) throw new Error('auth service restarting');
      return 'fresh';
    });
    const { client, errors } = newClient({ token: provider });
    const failures: Error[] = [];
    client.on('auth_failed', (error) => failures.push(error));
    const connecting = client.connect();
    /** Lets time pass as a gateway would (every new socket opens) until `done`. */
    const run = async (ms: number, done: () => boolean = () => false) => {
      for (let elapsed = 0; elapsed < ms && !done(); elapsed += 50) {
        const socket = FakeSocket.last();
        if (socket.readyState === 0) socket.open();
        await vi.advanceTimersByTimeAsync(50);
      }
    };
    await run(3_000);
    expect(provider.mock.calls.length).toBeGreaterThan(2);
    expect(client.state).not.toBe('closed');
    expect(errors[0]).toMatchObject({ code: 'unavailable', message: 'the token provider failed: auth service restarting' });
    failing = false;
    await run(15_000, () => FakeSocket.last().sentOf('auth').length > 0);
    const socket = FakeSocket.last();
    const auth = socket.sentOf('auth').at(-1);
    expect(auth).toMatchObject({ token: 'fresh' });
    socket.receive({ type: 'auth_success', req_id: auth?.req_id, user: USER });
    await connecting;
    expect(client.state).toBe('ready');
    expect(failures).toEqual([]);
    client.close();
  });

  it('tells the app why the gateway refused its auth for now (too many connections), and tries again later', async () => {
    const { client, errors } = newClient();
    const connecting = client.connect();
    const socket = FakeSocket.last();
    socket.open();
    await flush();
    const auth = socket.sentOf('auth').at(-1);
    const message = 'at most 20 connections per user on this gateway; close one first';
    socket.receive({ type: 'error', code: 'rate_limited', message, req_id: auth?.req_id });
    await flush();
    expect(errors).toMatchObject([{ code: 'rate_limited', message: `authentication refused for now: ${message}` }]);
    expect(client.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(5_000);
    expect(FakeSocket.all.length).toBe(2);
    await accept();
    await connecting;
    expect(client.state).toBe('ready');
    client.close();
  });

  it('reconnects when the provider does not answer after the token was refused, instead of waiting for it for ever', async () => {
    let calls = 0;
    const provider = vi.fn(() => (++calls === 1 ? 'token-1' : new Promise<string>(noop)));
    const { client, socket: first } = await connected({ token: provider });
    first.serverClose(4001);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(provider).toHaveBeenCalledTimes(2);
    expect(FakeSocket.all.length).toBeGreaterThan(1);
    expect(client.state).toBe('reconnecting');
    client.close();
  });

  it('tells the app of a provider that does not answer while connecting, and connects again', async () => {
    const { client, errors } = newClient({ token: () => new Promise<string>(noop) });
    void client.connect().catch(noop);
    FakeSocket.last().open();
    await vi.advanceTimersByTimeAsync(10_001);
    // Before, the handshake timer dropped the socket first, without a word.
    expect(errors).toMatchObject([
      {
        code: 'unavailable',
        message: 'the token provider had not answered when the handshake timed out (10000 ms after connecting began)',
      },
    ]);
    expect(client.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(5_000);
    expect(FakeSocket.all.length).toBe(2);
    client.close();
  });

  it("reports a 4001 without an error frame with its own reason, not an earlier socket's auth error", async () => {
    const { client, socket } = await connected();
    const failures: Error[] = [];
    client.on('auth_failed', (error) => failures.push(error));
    // A renewal refused, and the socket lost before its 4001.
    socket.receive({ type: 'error', code: 'auth_failed', message: 'the role changed; reconnect with the new token' });
    socket.serverClose(1006);
    await vi.advanceTimersByTimeAsync(250);
    const second = FakeSocket.last();
    expect(second).not.toBe(socket);
    second.open();
    await flush();
    second.serverClose(4001, 'token expired');
    await flush();
    // Before: the first socket's "the role changed" was reported for the second one's refusal.
    expect(failures).toMatchObject([{ code: 'auth_failed', message: 'token expired' }]);
  });

  it('asks the provider once for a socket opened while its answer for one that timed out is awaited', async () => {
    let answer: (token: string) => void = noop;
    const provider = vi.fn(() => new Promise<string>((resolve) => (answer = resolve)));
    const { client } = newClient({ token: provider });
    const connecting = client.connect();
    // A slow network: the socket opens 2 s after connecting began, and the handshake times out at 10 s.
    await vi.advanceTimersByTimeAsync(2_000);
    FakeSocket.last().open();
    // The handshake times out at 10 s; the next socket (after a backoff under 250 ms) opens within
    // the first answer's wait, which ends 10 s after its socket opened.
    await vi.advanceTimersByTimeAsync(9_000);
    expect(FakeSocket.all.length).toBe(2);
    const second = FakeSocket.last();
    second.open();
    await flush();
    // Before: asked a second time at once, the first answer still on its way.
    expect(provider).toHaveBeenCalledTimes(1);
    answer('token-late');
    await flush();
    expect(second.sentOf('auth')).toMatchObject([{ token: 'token-late' }]);
    second.receive({ type: 'auth_success', req_id: second.sentOf('auth')[0]?.req_id, user: USER });
    await connecting;
    expect(client.state).toBe('ready');
    client.close();
  });

  it('asks the provider again once the wait for an answer that never came has timed out', async () => {
    const provider = vi.fn(() => new Promise<string>(noop));
    const { client } = newClient({ token: provider });
    void client.connect().catch(noop);
    FakeSocket.last().open();
    await vi.advanceTimersByTimeAsync(10_001);
    await vi.advanceTimersByTimeAsync(5_000);
    FakeSocket.last().open();
    await flush();
    expect(provider).toHaveBeenCalledTimes(2);
    client.close();
  });

  it('leaves no timer behind when closed while the provider has not answered', async () => {
    const { client } = newClient({ token: () => new Promise<string>(noop) });
    void client.connect().catch(noop);
    FakeSocket.last().open();
    await flush();
    client.close();
    await flush();
    // Before, the wait for the provider kept its timer, and a Node process alive, for requestTimeoutMs.
    expect(vi.getTimerCount()).toBe(0);
  });

  it('does not report a provider failure that comes after close()', async () => {
    let fail: (error: Error) => void = noop;
    const provider = () =>
      new Promise<string>((_, reject) => {
        fail = reject;
      });
    const { client, errors } = newClient({ token: provider });
    const outcome = client.connect().catch((error: unknown) => error);
    FakeSocket.last().open();
    await flush();
    client.close();
    fail(new Error('auth service restarting'));
    await flush();
    expect(await outcome).toMatchObject({ code: 'closed' });
    expect(errors).toEqual([]);
  });
});

describe('token refresh', () => {
  /** An unsigned JWT-shaped token issued at `issuerNow` (the issuer's clock): the client only reads its `iat` and `exp`. */
  const jwt = (name: string, expiresInMs: number, issuerNow = Date.now()) => {
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const claims = { sub: name, iat: Math.floor(issuerNow / 1000), exp: Math.floor((issuerNow + expiresInMs) / 1000) };
    return `${encode({ alg: 'EdDSA' })}.${encode(claims)}.sig`;
  };

  /** A provider handing out tokens that each live `lifetimeMs`, numbered in order. */
  function provider(lifetimeMs: number) {
    const issued: string[] = [];
    const next = vi.fn(() => {
      const token = jwt(`t${issued.length + 1}`, lifetimeMs);
      issued.push(token);
      return token;
    });
    return { next, issued };
  }

  /** For tests that run for hours: the gateway answers the liveness probes, and accepts every refreshed token. */
  function answerForHours() {
    FakeSocket.onFrame = (socket, frame) => {
      if (frame.type === 'ping') later(() => socket.receive({ type: 'pong', req_id: frame.req_id }));
      if (frame.req_id === 'refresh') later(() => socket.receive({ type: 'auth_success', req_id: 'refresh', user: USER }));
    };
  }

  it('sends a fresh token on the open socket before the current one expires, and again before that one does', async () => {
    // exp has whole seconds, so a token lives 19–20 s here, and is refreshed 2 s before its exp.
    const tokens = provider(20_000);
    const { client, states, socket } = await connected({ token: tokens.next, refreshBeforeExpiryMs: 2_000 });
    expect(socket.sentOf('auth')).toHaveLength(1);

    await vi.advanceTimersByTimeAsync(16_900);
    expect(socket.sentOf('auth')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_200);
    expect(socket.sentOf('auth')).toHaveLength(2);
    expect(socket.sentOf('auth')[1]).toEqual({ type: 'auth', token: tokens.issued[1], req_id: 'refresh' });
    socket.receive({ type: 'auth_success', req_id: 'refresh', user: USER });

    // The next refresh follows the new token's expiry.
    await vi.advanceTimersByTimeAsync(18_100);
    expect(socket.sentOf('auth').map((frame) => frame.token)).toEqual(tokens.issued);
    expect(tokens.issued).toHaveLength(3);
    expect(FakeSocket.all).toHaveLength(1);
    expect(states).toEqual(['connecting', 'authenticating', 'ready']);
    client.close();
  });

  it('refreshes a short-lived token halfway through its life', async () => {
    const tokens = provider(10_000);
    const { client, socket } = await connected({ token: tokens.next });
    await vi.advanceTimersByTimeAsync(4_000);
    expect(socket.sentOf('auth')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(socket.sentOf('auth')).toHaveLength(2);
    client.close();
  });

  it('does not refresh at once a token that lives longer than a timer can wait (24.8 days)', async () => {
    const tokens = provider(30 * 24 * 3600_000);
    const { client, socket } = await connected({ token: tokens.next });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(socket.sentOf('auth')).toHaveLength(1);
    expect(tokens.next).toHaveBeenCalledTimes(1);
    client.close();
  });

  it.each([
    ['ahead of', 2],
    ['behind', -2],
  ])("refreshes once per token lifetime with the device clock two hours %s the issuer's", async (_, hours) => {
    const offset = hours * 3600_000;
    const issuerNow = () => Date.now() - offset;
    vi.setSystemTime(Date.now() + offset);
    const issued: string[] = [];
    const next = vi.fn(() => {
      const token = jwt(`t${issued.length + 1}`, 3600_000, issuerNow());
      issued.push(token);
      return token;
    });
    const { client, socket } = await connected({ token: next });
    // The gateway, on the issuer's clock, accepts every refreshed token.
    answerForHours();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(next).toHaveBeenCalledTimes(1);
    expect(socket.sentOf('auth')).toHaveLength(1);

    // A minute before the hour the token lives, counted from when it arrived: then again an hour later.
    await vi.advanceTimersByTimeAsync(3_538_000 - 10_000);
    expect(socket.sentOf('auth')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(socket.sentOf('auth')).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(3_598_000);
    expect(socket.sentOf('auth').map((frame) => frame.token)).toEqual(issued);
    expect(issued).toHaveLength(3);
    expect(FakeSocket.all).toHaveLength(1);
    client.close();
  });

  it("refreshes at most every quarter of a token's life with the device clock a little less than its life ahead", async () => {
    const offset = 3590_000;
    vi.setSystemTime(Date.now() + offset);
    let count = 0;
    const next = vi.fn(() => jwt(`t${++count}`, 3600_000, Date.now() - offset));
    const { client, socket } = await connected({ token: next });
    answerForHours();
    // By the local clock every fresh token is about to expire: refreshed after 1 s, then every 15 minutes.
    await vi.advanceTimersByTimeAsync(3600_000);
    expect(socket.sentOf('auth')).toHaveLength(5);
    expect(FakeSocket.all).toHaveLength(1);
    client.close();
  });

  it('refreshes a cached token by the local clock when that is sooner than its lifetime says', async () => {
    // The provider hands out a token issued 50 minutes ago, and the clocks agree.
    const tokens = [jwt('cached', 3600_000, Date.now() - 50 * 60_000), jwt('fresh', 3600_000)];
    const next = vi.fn(() => tokens.shift() ?? 'none');
    const { client, socket } = await connected({ token: next });
    answerForHours();
    await vi.advanceTimersByTimeAsync(8 * 60_000);
    expect(socket.sentOf('auth')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2 * 60_000);
    expect(socket.sentOf('auth').map((frame) => frame.req_id)).toEqual(['auth', 'refresh']);
    client.close();
  });

  it('never refreshes a fixed token, or when refreshTokens is false', async () => {
    for (const options of [{ token: jwt('fixed', 10_000) }, { token: provider(10_000).next, refreshTokens: false }]) {
      const { client, socket } = await connected(options);
      await vi.advanceTimersByTimeAsync(9_000);
      expect(socket.sentOf('auth')).toHaveLength(1);
      client.close();
    }
  });

  it('asks the provider again later while it returns the token in use', async () => {
    const token = jwt('same', 10_000);
    const next = vi.fn(() => token);
    const { client, socket } = await connected({ token: next });
    await vi.advanceTimersByTimeAsync(5_001);
    expect(next).toHaveBeenCalledTimes(2);
    expect(socket.sentOf('auth')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2_001);
    expect(next.mock.calls.length).toBeGreaterThanOrEqual(3);
    expect(socket.sentOf('auth')).toHaveLength(1);
    client.close();
  });

  it('asks the provider again when it does not answer a refresh', async () => {
    let calls = 0;
    const next = vi.fn(() => (++calls === 1 ? jwt('t1', 10_000) : new Promise<string>(noop)));
    const { client, socket } = await connected({ token: next });
    await vi.advanceTimersByTimeAsync(5_001);
    expect(next).toHaveBeenCalledTimes(2);
    // It waits requestTimeoutMs for the answer, then asks again within two seconds.
    await vi.advanceTimersByTimeAsync(12_000);
    expect(next).toHaveBeenCalledTimes(3);
    expect(socket.sentOf('auth')).toHaveLength(1);
    client.close();
  });

  it('falls back to reconnecting with the next token when the refreshed one is refused and the socket closed', async () => {
    const tokens = provider(10_000);
    const { client, errors, socket: first } = await connected({ token: tokens.next });
    await vi.advanceTimersByTimeAsync(5_001);
    first.receive({ type: 'error', req_id: 'refresh', code: 'auth_failed', message: 'invalid signature' });
    first.serverClose(4001);
    await flush();
    const second = await accept(FakeSocket.last());
    expect(second.sentOf('auth')[0]).toMatchObject({ token: tokens.issued[2], req_id: 'auth' });
    expect(client.state).toBe('ready');
    expect(errors).toEqual([]);
    client.close();
  });

  it('reports a refreshed token of another user and keeps the socket', async () => {
    const tokens = provider(10_000);
    const { client, errors, socket } = await connected({ token: tokens.next });
    await vi.advanceTimersByTimeAsync(5_001);
    socket.receive({ type: 'error', req_id: 'refresh', code: 'forbidden', message: 'a connection cannot change user; reconnect' });
    expect(errors).toMatchObject([{ code: 'forbidden' }]);
    expect(client.state).toBe('ready');
    expect(FakeSocket.all).toHaveLength(1);
    client.close();
  });

  it('leaves no timer behind when a listener of that error closes the client', async () => {
    const tokens = provider(10_000);
    const { client, socket } = await connected({ token: tokens.next });
    client.on('error', () => client.close());
    await vi.advanceTimersByTimeAsync(5_001);
    socket.receive({ type: 'error', req_id: 'refresh', code: 'forbidden', message: 'a connection cannot change user; reconnect' });
    expect(client.state).toBe('closed');
    // Before, the refresh was tried again 1–31 s later, and its timer kept a Node process alive.
    expect(vi.getTimerCount()).toBe(0);
  });
});
