import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { Deadlines, type PersistenceClient } from '@switchboard/bus';
import { createLogger } from '@switchboard/logging';
import { CloseCode, type Message, type ServerFrame } from '@switchboard/protocol';
import { TokenError, TokenErrorCode, type TokenVerifier, type VerifiedToken } from '@switchboard/tokens';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { SessionAccess } from '../broker/session-access.js';
import type { SessionHub } from '../broker/session-hub.js';
import { loadGatewayConfig } from '../config.js';
import { createGatewayMetrics } from '../metrics.js';
import { TokenRevocations } from '../token-revocations.js';
import { ClientConnection } from './connection.js';
import { UserConnections } from './user-connections.js';

/** The `ws` socket of a connection, as far as it uses it: what it sends, how it closes, what it buffers. */
class FakeSocket extends EventEmitter {
  readyState: number = WebSocket.OPEN;
  bufferedAmount = 0;
  readonly sent: ServerFrame[] = [];
  closedWith: number | undefined;
  send(data: string): void {
    this.sent.push(JSON.parse(data) as ServerFrame);
  }
  ping(): void {}
  pause(): void {}
  terminate(): void {
    this.readyState = WebSocket.CLOSED;
  }
  close(code: number): void {
    this.closedWith = code;
    this.readyState = WebSocket.CLOSING;
  }
  /** A frame from the client. */
  receive(frame: object): void {
    this.emit('message', Buffer.from(JSON.stringify(frame)), false);
  }
}

const MAX_BUFFERED_BYTES = 64 * 1024;
const GRACE_MS = 1_000;
const AUTH_TIMEOUT_MS = 200;

const open: FakeSocket[] = [];

afterEach(() => {
  // Ends each connection (its auth timer included).
  for (const ws of open.splice(0)) ws.emit('close');
});

interface Stand {
  verifier?: TokenVerifier;
  hub?: Partial<SessionHub>;
  access?: Partial<SessionAccess>;
  persistence?: Partial<PersistenceClient>;
  /** Where the connection's log lines go (silent without). */
  logLines?: string[];
}

function connect({
  verifier = { verify: () => new Promise<VerifiedToken>(() => undefined) },
  hub = {},
  access = { authorize: async () => undefined },
  persistence = {},
  logLines,
}: Stand = {}) {
  const ws = new FakeSocket();
  open.push(ws);
  const tcp = new PassThrough();
  const metrics = createGatewayMetrics(new Registry());
  const connection = new ClientConnection(ws as unknown as WebSocket, tcp, {
    config: loadGatewayConfig({
      MAX_BUFFERED_BYTES: String(MAX_BUFFERED_BYTES),
      SLOW_CLIENT_GRACE_MS: String(GRACE_MS),
      AUTH_TIMEOUT_MS: String(AUTH_TIMEOUT_MS),
    }),
    logger: logLines
      ? createLogger({ name: 'connection-test', level: 'info', destination: { write: (line: string) => logLines.push(line) } })
      : createLogger({ name: 'connection-test', level: 'silent' }),
    metrics,
    verifier,
    persistence: persistence as PersistenceClient,
    access: access as SessionAccess,
    hub: { leaveAll: () => undefined, ...hub } as SessionHub,
    expiries: new Deadlines<ClientConnection>(() => undefined),
    userConnections: new UserConnections(0),
    revocations: new TokenRevocations(),
  });
  const slowClientsClosed = async () => (await metrics.slowClientsClosed.get()).values[0]?.value ?? 0;
  return { ws, tcp, connection, slowClientsClosed };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A token of the user, issued now and valid for a minute. */
const tokenOf = (userId: number, role: VerifiedToken['role'], username: string): VerifiedToken => ({
  userId,
  role,
  username,
  expiresAt: Date.now() + 60_000,
  tokenVersion: 0,
});

/** Verifiers that accept any token as a customer's, or an agent's. */
const CUSTOMER: TokenVerifier = { verify: async () => tokenOf(7, 'user', 'customer7') };
const AGENT: TokenVerifier = { verify: async () => tokenOf(8, 'agent', 'agent8') };
const storedMessage = (clientMsgId: string, seq: number): Message => ({
  id: 100 + seq,
  session_id: 5,
  seq,
  sender_id: 7,
  sender_role: 'user',
  content: clientMsgId,
  client_msg_id: clientMsgId,
  created_at: new Date().toISOString(),
});

describe('a slow client', () => {
  it('is closed with 1013 once its send buffer has stayed over the limit for the grace period', async () => {
    const { ws, connection, slowClientsClosed } = connect();
    ws.bufferedAmount = 2 * MAX_BUFFERED_BYTES;
    connection.checkBackpressure(0);
    connection.checkBackpressure(GRACE_MS - 1);
    expect(ws.closedWith).toBeUndefined();
    connection.checkBackpressure(GRACE_MS);
    expect(ws.closedWith).toBe(CloseCode.TryAgainLater);
    expect(await slowClientsClosed()).toBe(1);
  });

  it('is not a client that read everything since, over the limit again only for a moment', async () => {
    const { ws, tcp, connection, slowClientsClosed } = connect();
    ws.bufferedAmount = 2 * MAX_BUFFERED_BYTES;
    connection.checkBackpressure(0);
    // It reads it all, and nothing is written to it (so nothing checks it) for a while.
    ws.bufferedAmount = 0;
    tcp.emit('drain');
    // A burst much later leaves it over the limit again.
    ws.bufferedAmount = 2 * MAX_BUFFERED_BYTES;
    connection.checkBackpressure(GRACE_MS * 10);
    // Before: closed at once, as if it had been over the limit all along.
    expect(ws.closedWith).toBeUndefined();
    expect(await slowClientsClosed()).toBe(0);
    connection.checkBackpressure(GRACE_MS * 11);
    expect(ws.closedWith).toBe(CloseCode.TryAgainLater);
  });
});

describe('the auth timeout', () => {
  it('closes a socket that sent no auth frame in time with 4001', async () => {
    const { ws } = connect();
    await sleep(AUTH_TIMEOUT_MS * 2);
    expect(ws.sent.at(-1)).toMatchObject({ type: 'error', code: 'auth_required' });
    expect(ws.closedWith).toBe(CloseCode.AuthFailed);
  });

  it('leaves an auth frame that came in time to the check of its token, however long it takes', async () => {
    let accept: (token: VerifiedToken) => void = () => undefined;
    const { ws } = connect({ verifier: { verify: () => new Promise<VerifiedToken>((resolve) => (accept = resolve)) } });
    ws.receive({ type: 'auth', token: 'a-token', req_id: 1 });
    await sleep(AUTH_TIMEOUT_MS * 2);
    // Before: closed with 4001 ("no auth frame in time"), a good token still being checked.
    expect(ws.closedWith).toBeUndefined();
    accept(tokenOf(7, 'agent', 'agent7'));
    await sleep(10);
    expect(ws.sent.at(-1)).toMatchObject({ type: 'auth_success', req_id: 1, user: { id: 7 } });
    expect(ws.closedWith).toBeUndefined();
  });

  it('closes the socket once a check that outlasted the timeout could not verify the token', async () => {
    const { ws } = connect({
      verifier: {
        verify: async () => {
          await sleep(AUTH_TIMEOUT_MS * 1.5);
          throw new TokenError(TokenErrorCode.Unavailable, 'the signing keys could not be fetched');
        },
      },
    });
    ws.receive({ type: 'auth', token: 'a-token', req_id: 1 });
    await sleep(AUTH_TIMEOUT_MS * 1.25);
    expect(ws.closedWith).toBeUndefined();
    await sleep(AUTH_TIMEOUT_MS * 0.75);
    expect(ws.sent.slice(-2)).toMatchObject([
      { type: 'error', code: 'unavailable', req_id: 1 },
      { type: 'error', code: 'auth_required' },
    ]);
    expect(ws.closedWith).toBe(CloseCode.AuthFailed);
  });

  it('leaves a socket open that authenticated after two auth frames in a row were answered unavailable', async () => {
    let checks = 0;
    const { ws } = connect({
      verifier: {
        verify: async () => {
          checks++;
          if (checks <= 2) throw new TokenError(TokenErrorCode.Unavailable, 'the signing keys could not be fetched');
          return tokenOf(7, 'agent', 'agent7');
        },
      },
    });
    ws.receive({ type: 'auth', token: 'a-token', req_id: 1 });
    ws.receive({ type: 'auth', token: 'a-token', req_id: 2 });
    await sleep(AUTH_TIMEOUT_MS / 2);
    ws.receive({ type: 'auth', token: 'a-token', req_id: 3 });
    await sleep(AUTH_TIMEOUT_MS * 2);
    expect(ws.sent.at(-1)).toMatchObject({ type: 'auth_success', req_id: 3 });
    expect(ws.closedWith).toBeUndefined();
  });
});

describe('a token expiring, or a renewal refused, while a send is in flight', () => {
  /** An authenticated connection whose sends are stored when the test says: `stored[i]` answers the i-th. */
  const connectWithHeldSends = (verifier = CUSTOMER) => {
    const stored: ((message: Message) => void)[] = [];
    const connected = connect({
      verifier,
      hub: { send: () => new Promise<Message>((resolve) => stored.push(resolve)) },
    });
    connected.ws.receive({ type: 'auth', token: 'a-token' });
    return { ...connected, stored };
  };

  it('answers the send first, and the queued ones unavailable, then closes with 4001', async () => {
    const { ws, connection, stored } = connectWithHeldSends();
    for (const id of ['m1', 'm2', 'm3']) ws.receive({ type: 'send_message', session_id: 5, content: id, client_msg_id: id });
    await sleep(10);
    expect(stored).toHaveLength(1); // m1 published, m2 and m3 queued behind it

    const expired = connection.expire(2_000);
    await sleep(10);
    expect(ws.closedWith).toBeUndefined();
    stored[0]?.(storedMessage('m1', 1));
    await expired;
    // Before: closed at once, with m1's ack lost (it was stored) and m2 and m3 unanswered.
    expect(ws.sent.slice(-4)).toMatchObject([
      { type: 'error', code: 'unavailable', client_msg_id: 'm2' },
      { type: 'error', code: 'unavailable', client_msg_id: 'm3' },
      { type: 'message_ack', client_msg_id: 'm1', message_id: 101, seq: 1 },
      { type: 'error', code: 'auth_failed' },
    ]);
    expect(ws.closedWith).toBe(CloseCode.AuthFailed);
    expect(stored).toHaveLength(1);
  });

  it('holds a restart that begins meanwhile until the send is answered', async () => {
    const { ws, connection, stored } = connectWithHeldSends();
    ws.receive({ type: 'send_message', session_id: 5, content: 'm1', client_msg_id: 'm1' });
    await sleep(10);
    const expired = connection.expire(2_000);
    let restarted = false;
    const restart = connection.closeForRestart(2_000).then(() => {
      restarted = true;
    });
    await sleep(10);
    // Before: the restart's close came back at once, and its drain could end the connection.
    expect(restarted).toBe(false);
    stored[0]?.(storedMessage('m1', 1));
    await Promise.all([expired, restart]);
    expect(ws.sent.at(-2)).toMatchObject({ type: 'message_ack', client_msg_id: 'm1' });
    expect(ws.closedWith).toBe(CloseCode.AuthFailed);
  });

  /** Takes 'a-token' as the customer's, and any other as `renewal` says. */
  const renewedAs = (renewal: () => Promise<VerifiedToken>): TokenVerifier => ({
    verify: (token) => (token === 'a-token' ? CUSTOMER.verify(token) : renewal()),
  });

  it.each([
    ['of another role', renewedAs(async () => tokenOf(7, 'agent', 'customer7'))],
    [
      'that does not verify',
      renewedAs(async () => {
        throw new TokenError(TokenErrorCode.Invalid, 'signature verification failed');
      }),
    ],
  ])('answers the send first, and the queued ones unavailable, when a renewal %s is refused', async (_, verifier) => {
    const { ws, stored } = connectWithHeldSends(verifier);
    for (const id of ['m1', 'm2']) ws.receive({ type: 'send_message', session_id: 5, content: id, client_msg_id: id });
    await sleep(10);
    ws.receive({ type: 'auth', token: 'another-token', req_id: 'renew' });
    await sleep(10);
    expect(ws.closedWith).toBeUndefined();
    stored[0]?.(storedMessage('m1', 1));
    await sleep(10);
    // Before: closed with 4001 at once, m1's ack lost (it was stored) and m2 unanswered.
    expect(ws.sent.slice(-3)).toMatchObject([
      { type: 'error', code: 'unavailable', client_msg_id: 'm2' },
      { type: 'message_ack', client_msg_id: 'm1', seq: 1 },
      { type: 'error', code: 'auth_failed', req_id: 'renew' },
    ]);
    expect(ws.closedWith).toBe(CloseCode.AuthFailed);
    expect(stored).toHaveLength(1);
  });
});

describe("sends queued behind a client's close frame", () => {
  it('are not published: the socket is CLOSING until TCP ends, and no ack could reach it', async () => {
    const stored: ((message: Message) => void)[] = [];
    const { ws } = connect({ verifier: CUSTOMER, hub: { send: () => new Promise<Message>((resolve) => stored.push(resolve)) } });
    ws.receive({ type: 'auth', token: 'a-token' });
    for (const id of ['m1', 'm2', 'm3']) ws.receive({ type: 'send_message', session_id: 5, content: id, client_msg_id: id });
    await sleep(10);
    expect(stored).toHaveLength(1);
    // The client's close frame: ws stops reading and leaves the socket CLOSING, 'close' comes later.
    ws.readyState = WebSocket.CLOSING;
    stored[0]?.(storedMessage('m1', 1));
    await sleep(10);
    // Before: m2, then m3, published and stored for a socket their acks could never reach.
    expect(stored).toHaveLength(1);
  });
});

describe('a frame being handled when a restart closes the socket', () => {
  it('an auth frame whose token is being checked is answered unavailable with its req_id before the 1012', async () => {
    let accept: (token: VerifiedToken) => void = () => undefined;
    const { ws, connection } = connect({ verifier: { verify: () => new Promise<VerifiedToken>((resolve) => (accept = resolve)) } });
    ws.receive({ type: 'auth', token: 'a-token', req_id: 4 });
    await sleep(10);
    const restarted = connection.closeForRestart(2_000);
    accept(tokenOf(7, 'user', 'customer7'));
    await restarted;
    // Before: nothing answered it; the client saw the 1012 alone.
    expect(ws.sent.at(-1)).toMatchObject({ type: 'error', code: 'unavailable', req_id: 4 });
    expect(ws.closedWith).toBe(CloseCode.ServiceRestart);
  });

  it('a join is answered unavailable with its req_id before the 1012', async () => {
    let authorized: () => void = () => undefined;
    const { ws, connection } = connect({
      verifier: AGENT,
      hub: { join: async () => undefined, membership: () => ({ count: 0, includes: false }) },
      access: { authorize: () => new Promise<void>((resolve) => (authorized = resolve)) },
    });
    ws.receive({ type: 'auth', token: 'a-token' });
    ws.receive({ type: 'join_session', session_id: 5, req_id: 9 });
    await sleep(10);
    const restarted = connection.closeForRestart(2_000);
    authorized();
    await restarted;
    // Before: the join went on for a socket already leaving, and nothing answered it.
    expect(ws.sent.at(-1)).toMatchObject({ type: 'error', code: 'unavailable', req_id: 9 });
    expect(ws.closedWith).toBe(CloseCode.ServiceRestart);
  });
});

describe('unsolicited pongs', () => {
  it('count against the rate like any frame, and a flood of them closes the socket with 1008', () => {
    const lines: string[] = [];
    const { ws } = connect({ logLines: lines });
    // All of them: `ws` goes on emitting pongs while the socket closes.
    for (let i = 0; i < 10_000; i++) ws.emit('pong', Buffer.alloc(0));
    // Before: never closed, each pong parsed and handled for free.
    expect(ws.closedWith).toBe(CloseCode.PolicyViolation);
    expect(lines.filter((line) => line.includes('flooding'))).toHaveLength(1);
  });

  it("do not include the pong that answers the gateway's ping, which costs nothing", () => {
    const { ws, connection } = connect();
    // All but one token of the bucket (a burst of twice the rate) taken by frames.
    for (let i = 0; i < 39; i++) ws.receive({ type: 'ping', req_id: i });
    connection.ping();
    ws.emit('pong', Buffer.alloc(0));
    ws.receive({ type: 'ping', req_id: 'last' });
    // The last token is the frame's: a first version took it for the pong, and refused the frame.
    expect(ws.sent.filter((frame) => frame.type === 'error' && frame.code === 'rate_limited')).toEqual([]);
    ws.emit('pong', Buffer.alloc(0)); // unasked: over the rate now, and counted
    ws.receive({ type: 'ping', req_id: 'over' });
    expect(ws.sent.filter((frame) => frame.type === 'error' && frame.code === 'rate_limited')).toHaveLength(1);
  });
});

describe('a page of sessions after before_id', () => {
  it('is refused unavailable while persistence is older than paging, and a first page has no more', async () => {
    // An older persistence: no has_more, and before_id ignored.
    const { ws } = connect({ verifier: AGENT, persistence: { call: (async () => ({ sessions: [] })) as PersistenceClient['call'] } });
    ws.receive({ type: 'auth', token: 'a-token' });
    ws.receive({ type: 'list_sessions', before_id: 42, req_id: 1 });
    ws.receive({ type: 'list_sessions', req_id: 2 });
    await sleep(10);
    expect(ws.sent.slice(-2)).toMatchObject([
      { type: 'error', code: 'unavailable', req_id: 1 },
      { type: 'sessions', req_id: 2, sessions: [], has_more: false },
    ]);
  });
});
