import type { ClientFrame, Message, ReqId, Role, ServerFrame, Session } from '@switchboard/protocol';
import { backoffDelay } from './backoff.js';
import { Emitter, type Listener } from './emitter.js';
import { ChatError, isTransient, MAX_TIMER_MS, retryAfterOf, timerDelay } from './errors.js';
import { Outbox, type SendResult } from './outbox.js';
import { FrameBucket } from './pacer.js';
import { type Reply, type ReplyType, type RequestOptions, RequestTracker } from './pending.js';
import { refreshDelay } from './refresh.js';
import { OPEN, type SocketCloseEvent, type SocketMessageEvent, type WebSocketConstructor, type WebSocketLike } from './socket.js';
import type { Timer } from './transport.js';
import { randomId, tokenTimes, utf8Length } from './util.js';

export interface ChatClientOptions {
  /** The gateway's WebSocket URL, e.g. `ws://localhost:2346/ws`; with several, each reconnect tries the next one. */
  url: string | string[];
  /** A token, or a function returning one: called on every (re)connect, and once more after a refused token before giving up. */
  token: string | (() => string | Promise<string>);
  /** Default `globalThis.WebSocket`. In Node pass the `ws` package's `WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** The ceiling of the first reconnect delay (default 250); it doubles per failed attempt. */
  minReconnectDelayMs?: number;
  /** The ceiling of the reconnect delay (default 10 000). Delays are drawn at random below the ceiling. */
  maxReconnectDelayMs?: number;
  /**
   * How long a request waits for its answer (default 10 000); also the limit for connecting and
   * authenticating, and for the token provider to answer.
   */
  requestTimeoutMs?: number;
  /** Sends whose frame would be larger are refused with `payload_too_large` (default 65 536, the gateway's `MAX_FRAME_BYTES`). */
  maxFrameBytes?: number;
  /**
   * With a token provider, fetch a fresh token before the current one expires and send it as a
   * new `auth` on the open socket, so the gateway never closes it for an expired token (default
   * true). Without a provider, or when this is false, an expired token closes the socket with
   * 4001 and the client reconnects with the provider's next token.
   */
  refreshTokens?: boolean;
  /**
   * How long before the token expires to refresh it (default 60 000), at most half of its
   * lifetime. The lifetime (`exp − iat`) counts from when the provider handed the token over, so
   * a device clock hours off does not move the refresh.
   */
  refreshBeforeExpiryMs?: number;
  /**
   * The most frames a second the client writes (default 20, the gateway's `RATE_LIMIT_PER_SEC`),
   * with bursts of up to `frameBurst` (default 30, below the gateway's 40). A frame over it waits
   * its turn rather than be refused, so that everything sent again after a reconnect (a rejoin per
   * joined session, pending requests, unacknowledged sends) goes out paced, rejoins first. Set
   * both to match a gateway configured with another rate.
   */
  maxFramesPerSec?: number;
  frameBurst?: number;
}

export type ConnectionState = 'idle' | 'connecting' | 'authenticating' | 'ready' | 'reconnecting' | 'closed';

export interface ChatUser {
  id: number;
  username: string;
  role: Role;
}

/** Which sessions `listSessions` lists: by status, at most `limit` (1–200, default 50), after `beforeId` (the next page). */
export interface SessionListOptions {
  status?: 'open' | 'closed';
  limit?: number;
  beforeId?: number;
}

export interface MessageAck {
  sessionId: number;
  clientMsgId: string;
  messageId: number;
  seq: number;
}

export interface ChatClientEvents {
  state: ConnectionState;
  /** Each `new_message` of a joined session once, in seq order per session, across reconnects. */
  message: Message;
  ack: MessageAck;
  /**
   * The client is closed for want of a usable token: the token was refused and a fresh one from
   * the provider was refused too, the provider returned something other than a token string, a
   * token of another user was accepted, or the gateway refused the auth frame itself.
   */
  auth_failed: Error;
  /**
   * Server errors that answer no pending request, joined sessions that could not be joined again,
   * a token provider that failed, and frames from the server dropped for a missing or wrong field
   * (`invalid_message`).
   */
  error: ChatError;
}

interface JoinedSession {
  /** The highest seq delivered to the app. */
  cursor: number;
  /** A rejoin waiting after a transient error. */
  retry: Timer | undefined;
  /** Rejoins that failed in a row: each waits longer, so an outage is not met with a join every half second. */
  failures: number;
  /** Of those, the ones refused with an unexpected error (`internal`): the session is given up at MAX_UNEXPECTED_REJOIN_FAILURES. */
  unexpected: number;
  /** `performance.now()` when the gateway last answered a join of it on this socket, until that join fails. */
  joinedAt: number | undefined;
}

/** A token from the provider, and when it arrived by the local clock: its lifetime counts from then. */
interface FetchedToken {
  value: string;
  receivedAt: number;
}

const AUTH_REQ_ID = 'auth';
const REFRESH_REQ_ID = 'refresh';
const PROBE_REQ_ID = 'probe';
const DEFAULT_HEARTBEAT_MS = 25_000;
/** Close code for a socket the client abandons (no answer, refused token, closed by the app). */
const CLIENT_CLOSE = 4000;
/**
 * How long a socket given up has for its closing handshake before it is cut, where the socket can
 * be cut (Node's `ws`): its close() waits 30 s for the server's close frame, which a dead
 * connection never sends, on a timer that keeps the process alive.
 */
const CLOSE_HANDSHAKE_MS = 1_000;
const AUTH_CLOSE = 4001;
/**
 * The longest wait for a token provider that hands back the token the gateway refused as expired
 * (`mayWaitForFreshToken`), from the first one handed back: a device whose clock is hours behind
 * would otherwise wait as long, where giving up (`auth_failed`) lets the app sign in afresh.
 */
const MAX_STALE_TOKEN_WAIT_MS = 5 * 60_000;
/**
 * How long a connection must stay ready before the reconnect backoff starts over. One closed
 * sooner (a gateway that accepts the token and then closes the socket, over and over) keeps
 * backing off, rather than reconnecting within 250 ms each time.
 */
const STABLE_CONNECTION_MS = 10_000;
/**
 * How long a session must stay joined, after the gateway answered its join, before its rejoin
 * counts as a success and the rejoin backoff starts over. The gateway answers a join before it
 * replays the messages missed, and a replay that fails comes as an error after that answer: a
 * rejoin whose replay fails again and again keeps backing off, rather than retrying within
 * 500 ms each time.
 */
const STABLE_JOIN_MS = 10_000;
/** Join errors after which joining again cannot help. */
const PERMANENT_JOIN_ERRORS = new Set(['forbidden', 'not_found', 'invalid_message']);
/** Rejoins refused in a row with an unexpected error (`internal`) before the session is given up. */
const MAX_UNEXPECTED_REJOIN_FAILURES = 3;

const noop = (): void => undefined;

/** A gateway refuses an `auth` frame whose token is longer (the protocol's `auth` frame). */
export const MAX_TOKEN_CHARS = 16_384;

/**
 * Options that would stop the client rather than tune it: no frame would ever leave at a rate of
 * 0 or a burst under 1, and a timeout of 0 (or NaN) would drop every socket as it opens.
 */
function checkOptions(options: ChatClientOptions): void {
  const check = (name: keyof ChatClientOptions, valid: (value: number) => boolean, rule: string) => {
    const value = options[name];
    if (value !== undefined && !(typeof value === 'number' && valid(value)))
      throw new RangeError(`${name} must be ${rule}, not ${String(value)}`);
  };
  // A reconnect delay of 0 (a first one, which doubles to 0 for ever, or a ceiling) would make
  // every reconnect and retry at once: a hot loop against a gateway that refuses connections.
  for (const name of ['maxFramesPerSec', 'requestTimeoutMs', 'maxFrameBytes', 'minReconnectDelayMs', 'maxReconnectDelayMs'] as const)
    check(name, (value) => value > 0, 'above 0');
  check('frameBurst', (value) => value >= 1, 'at least 1');
  check('refreshBeforeExpiryMs', (value) => value >= 0, '0 or more');
}

/** Whether an `auth_success` carries the user the client reports. */
function isUser(value: unknown): value is ChatUser {
  if (typeof value !== 'object' || value === null) return false;
  const user = value as Record<string, unknown>;
  return Number.isFinite(user.id) && typeof user.username === 'string' && typeof user.role === 'string';
}

/** Whether a `message_ack` carries what `send()` resolves with. */
function isAck(frame: Extract<ServerFrame, { type: 'message_ack' }>): boolean {
  return (
    Number.isFinite(frame.session_id) &&
    typeof frame.client_msg_id === 'string' &&
    Number.isFinite(frame.message_id) &&
    Number.isFinite(frame.seq)
  );
}

const isSession = (value: unknown): boolean =>
  typeof value === 'object' && value !== null && Number.isFinite((value as { id?: unknown }).id);

/** What a reply to a request lacks that the app is handed, or undefined when it lacks nothing. */
function replyProblem(frame: Extract<ServerFrame, { type: 'history' | 'sessions' | 'session_created' }>): string | undefined {
  switch (frame.type) {
    case 'history':
      return Array.isArray(frame.messages) && frame.messages.every(isMessage)
        ? undefined
        : 'it has no messages, each with a numeric session_id and seq';
    case 'sessions':
      return Array.isArray(frame.sessions) && frame.sessions.every(isSession) ? undefined : 'it has no sessions, each with a numeric id';
    case 'session_created':
      return isSession(frame.session) ? undefined : 'it has no session with a numeric id';
  }
}

/** Whether a `new_message` carries a message with the numbers the client orders it by. */
function isMessage(value: unknown): value is Message {
  if (typeof value !== 'object' || value === null) return false;
  const message = value as Record<string, unknown>;
  return Number.isFinite(message.session_id) && Number.isFinite(message.seq);
}

/**
 * A Switchboard chat connection that survives gateway restarts and network failures: it reconnects
 * with backoff (to the next URL when given several), authenticates again, rejoins every joined
 * session from the last seq it delivered, and resends every unacknowledged message with its
 * `client_msg_id`, so the app sees each message once, in order, and every send is stored once.
 * Everything it writes is paced under the gateway's frame rate, so that all this after a reconnect
 * is never refused for the rate.
 */
export class ChatClient {
  private readonly urls: readonly string[];
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly minDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly timeoutMs: number;
  private readonly maxFrameBytes: number;
  private readonly events = new Emitter<ChatClientEvents>();
  private readonly requests: RequestTracker;
  private readonly outbox: Outbox;
  private readonly sessions = new Map<number, JoinedSession>();
  /**
   * join() calls waiting for their reply, by session. leave() cancels them, so that the reply of
   * a join sent before the leave does not make the client remember the session again.
   */
  private readonly joining = new Map<number, Set<object>>();
  /** The leave of each session still on its way (an app's `leave()`, or the undo of a join that timed out): a join waits for it. */
  private readonly leaving = new Map<number, Promise<unknown>>();
  /** Remembered sessions not joined on this socket yet, in order: written as the frame rate allows. */
  private readonly rejoinQueue = new Set<number>();
  private readonly bucket: FrameBucket;
  /** Armed while frames wait for the rate; a new frame waits behind them. */
  private paceTimer: Timer | undefined;
  /**
   * Joins sent on this socket, by req_id: an error with one of them later (after the reply, when
   * the replay fails) means that join failed. At most one answered join per session is kept: the
   * gateway handles a socket's frames one at a time, so once a join is answered any earlier join
   * of the same session has finished, its error (if any) already read. The entry of a left
   * session goes with the reply to the leave.
   */
  private readonly joins = new Map<ReqId, number>();
  /** The req_id of the latest answered join of each session on this socket. */
  private readonly answeredJoins = new Map<number, ReqId>();
  private readyWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  private currentState: ConnectionState = 'idle';
  private currentUser: ChatUser | undefined;
  private socket: WebSocketLike | undefined;
  /** Bumped by connect() and close(), so work started before either is dropped. */
  private epoch = 0;
  private urlIndex = 0;
  /** URLs whose WebSocket could not even be made, in a row: once every one has, the client gives up. */
  private unopenableInARow = 0;
  private attempts = 0;
  private wasReady = false;
  private authRetried = false;
  /** When the provider first handed back a token the gateway refused as expired (`mayWaitForFreshToken`), on `performance.now()`. */
  private staleTokenSince: number | undefined;
  private authError: string | undefined;
  /**
   * The gateway said `auth_required` without a request: no auth frame came in its time (a token
   * provider slower than AUTH_TIMEOUT_MS). Its 4001 then refused no token.
   */
  private authTimedOut = false;
  /** The token sent on the current socket, and one already fetched for the next. */
  private token: FetchedToken | undefined;
  private nextToken: FetchedToken | undefined;
  /** The socket waiting for the provider's token, if one is. */
  private awaitingToken: WebSocketLike | undefined;
  /** Ends each wait for the token provider under way: close() gives them up, with their timers. */
  private readonly providerWaits = new Set<() => void>();
  /**
   * The provider's answer awaited, and when it was asked for: a socket opened within
   * `requestTimeoutMs` of that (after a handshake that timed out on a slow network) waits for the
   * same answer, rather than ask the provider a second time at once (a login each, for some apps,
   * counted by auth's limits). One asked for longer ago is taken for hung, and asked again.
   */
  private providerCall: { answer: Promise<unknown>; askedAt: number } | undefined;
  /** A fresh token sent on the open socket, until its `auth_success`. */
  private refreshingTo: FetchedToken | undefined;
  private refreshTimer: Timer | undefined;
  /** Refresh attempts since the last token was accepted, for the backoff between them. */
  private refreshAttempts = 0;
  private reqCounter = 0;
  private heartbeatMs = DEFAULT_HEARTBEAT_MS;
  private reconnectTimer: Timer | undefined;
  /** Resets the reconnect backoff once the connection has lasted STABLE_CONNECTION_MS. */
  private stableTimer: Timer | undefined;
  private handshakeTimer: Timer | undefined;
  private idleTimer: Timer | undefined;

  constructor(private readonly options: ChatClientOptions) {
    this.urls = typeof options.url === 'string' ? [options.url] : [...options.url];
    if (this.urls.length === 0) throw new TypeError('ChatClient needs at least one url');
    const WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WebSocketImpl) throw new TypeError('no WebSocket implementation: pass one as the WebSocket option');
    this.WebSocketImpl = WebSocketImpl;
    checkOptions(options);
    // Timers fire at once past 2^31 - 1 ms: a longer delay (Infinity for "never") is the longest they take.
    this.minDelayMs = timerDelay(options.minReconnectDelayMs ?? 250);
    this.maxDelayMs = timerDelay(options.maxReconnectDelayMs ?? 10_000);
    this.timeoutMs = timerDelay(options.requestTimeoutMs ?? 10_000);
    this.maxFrameBytes = options.maxFrameBytes ?? 65_536;
    // On the monotonic clock, as the gateway's bucket is: a step of the wall clock must not refill it.
    this.bucket = new FrameBucket(options.maxFramesPerSec ?? 20, options.frameBurst ?? 30, () => performance.now());
    const transport = {
      transmit: (frame: ClientFrame) => this.transmit(frame),
      nextReqId: () => ++this.reqCounter,
      retryDelay: (attempt: number, notBeforeMs = 0) =>
        timerDelay(Math.max(notBeforeMs, backoffDelay(attempt, { minMs: this.minDelayMs, maxMs: this.maxDelayMs }))),
    };
    this.requests = new RequestTracker(transport, this.timeoutMs);
    this.outbox = new Outbox(transport);
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  /** The authenticated user, once the first `auth_success` has arrived. */
  get user(): ChatUser | undefined {
    return this.currentUser;
  }

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof ChatClientEvents>(event: K, listener: Listener<ChatClientEvents[K]>): () => void {
    return this.events.on(event, listener);
  }

  /**
   * Opens the connection. Resolves once authenticated; until then failed attempts are retried with
   * backoff. Rejects if the token is refused for good or close() is called first. After that the
   * client reconnects by itself. Calling it again after close() starts over.
   */
  connect(): Promise<void> {
    if (this.currentState === 'ready') return Promise.resolve();
    const ready = new Promise<void>((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
    if (this.currentState === 'idle' || this.currentState === 'closed') {
      this.epoch++;
      // Starting over: nothing of an earlier connection's user is joined again.
      this.sessions.clear();
      this.rejoinQueue.clear();
      this.currentUser = undefined;
      this.wasReady = false;
      this.authRetried = false;
      this.staleTokenSince = undefined;
      this.attempts = 0;
      this.unopenableInARow = 0;
      this.setState('connecting');
      this.open();
    }
    return ready;
  }

  /** Creates a session (customers only). Not repeated after a dropped connection: that rejects with `closed`. */
  async createSession(subject?: string): Promise<Session> {
    const frame: ClientFrame = { type: 'create_session', ...(subject === undefined ? {} : { subject }) };
    const reply = await this.request(() => frame, 'session_created', { idempotent: false });
    return reply.session;
  }

  /**
   * Joins a session and remembers it: from now on its messages arrive as `message` events, and
   * after a reconnect it is joined again from the last seq delivered. Without `lastSeq` only
   * messages after the reply's `lastSeq` arrive (page older ones with history()); with it, every
   * message after it is replayed first. Joining a joined session again continues from its cursor:
   * a message already delivered is not delivered again, even with a lower `lastSeq`. A leave()
   * called before the reply wins: the session is not remembered. One that times out is undone
   * with a leave, and a join waits for a leave of the session still on its way, which would
   * otherwise end the membership it makes.
   */
  async join(sessionId: number, options: { lastSeq?: number } = {}): Promise<{ lastSeq: number }> {
    const build = (): ClientFrame => {
      const lastSeq = options.lastSeq ?? this.sessions.get(sessionId)?.cursor;
      return { type: 'join_session', session_id: sessionId, ...(lastSeq === undefined ? {} : { last_seq: lastSeq }) };
    };
    const intent = {};
    const intents = this.joining.get(sessionId) ?? new Set<object>();
    this.joining.set(sessionId, intents.add(intent));
    try {
      // A leave of the session still on its way (waiting for the connection or to retry after
      // `rate_limited`) would go out after this join and end the membership it makes: it goes first.
      const leaving = this.leaving.get(sessionId);
      if (leaving) {
        const epoch = this.epoch;
        await leaving.catch(() => undefined);
        // Closed meanwhile (and maybe connected again, maybe as someone else): a join from before is not carried over.
        if (epoch !== this.epoch) throw new ChatError('closed', 'the client was closed');
        if (!this.joining.get(sessionId)?.has(intent)) throw new ChatError('closed', `left session ${sessionId} before it was joined`);
      }
      const reply = await this.request(build, 'joined_session', {
        idempotent: true,
        // Synchronous, so the cursor is set before the replayed messages that follow the reply are handled.
        onReply: (joined, reqId, sent) => {
          if (!this.joining.get(sessionId)?.has(intent)) return;
          const cursor = this.sessions.get(sessionId)?.cursor;
          this.remember(sessionId, joined.last_seq, options.lastSeq, reqId);
          // Sent without `last_seq` while another join of the session was on the wire, whose reply
          // has made it remembered since: this one's membership starts after the reply's
          // `last_seq` and replays nothing, so a message committed between the two replies would
          // never come. A rejoin from the cursor replays it.
          const sentLastSeq = sent.type === 'join_session' ? sent.last_seq : undefined;
          if (sentLastSeq === undefined && cursor !== undefined && cursor < joined.last_seq) this.rejoin(sessionId);
        },
      });
      return { lastSeq: reply.last_seq };
    } catch (error) {
      if (error instanceof ChatError && error.code === 'timeout') this.undoJoin(sessionId, intent);
      throw error;
    } finally {
      const current = this.joining.get(sessionId);
      current?.delete(intent);
      if (current?.size === 0) this.joining.delete(sessionId);
    }
  }

  /** Leaves a session: no more `message` events for it, and it is not joined again after a reconnect. */
  async leave(sessionId: number): Promise<void> {
    const session = this.sessions.get(sessionId);
    if (session) {
      clearTimeout(session.retry);
      this.sessions.delete(sessionId);
    }
    this.rejoinQueue.delete(sessionId);
    // A join waiting for its reply is not remembered when it comes (the leave follows it on the
    // wire), and one waiting to be sent, for the connection or to retry after `unavailable`, is
    // not sent at all: it would make a membership nobody tracks. One on the wire that the gateway
    // refuses (`unavailable`, `rate_limited`), or that a dropped connection cuts off, is not sent
    // again either: it rejects as well.
    this.joining.delete(sessionId);
    this.requests.cancel(
      (frame) => frame.type === 'join_session' && frame.session_id === sessionId,
      new ChatError('closed', `left session ${sessionId} before it was joined`),
    );
    // Without a connection there is no membership to end, and no join on the wire.
    if (this.currentState !== 'ready') return;
    // The joins of the session sent before the leave have finished by its reply.
    await this.sendLeave(sessionId, () => this.forgetJoin(sessionId));
  }

  /** Sends a leave of the session, which a join of it then waits for (see `leaving`). */
  private sendLeave(sessionId: number, onReply?: () => void): Promise<unknown> {
    const leaving = this.request(() => ({ type: 'leave_session', session_id: sessionId }), 'left_session', {
      idempotent: true,
      ...(onReply ? { onReply } : {}),
    });
    // A join waits for every leave still on its way, not only the newest: an older one waiting
    // out rate_limited, sent after the join, would end the membership the join made.
    const previous = this.leaving.get(sessionId);
    const pending = previous ? Promise.allSettled([previous, leaving]) : leaving;
    this.leaving.set(sessionId, pending);
    const forget = () => {
      if (this.leaving.get(sessionId) === pending) this.leaving.delete(sessionId);
    };
    pending.then(forget, forget);
    return leaving;
  }

  /**
   * Sends a message. Resolves once it is stored. Until then it is resent with the same
   * `client_msg_id` after a reconnect, and after `unavailable` or `rate_limited` with backoff;
   * other errors reject with a ChatError carrying the protocol code and the message's
   * `clientMsgId`, for sending it again with the same id. Messages to one session are stored in
   * the order of the calls.
   */
  send(sessionId: number, content: string, options: { clientMsgId?: string } = {}): Promise<SendResult> {
    const clientMsgId = options.clientMsgId ?? randomId();
    if (this.currentState === 'closed') return Promise.reject(new ChatError('closed', 'the client is closed', undefined, clientMsgId));
    const frame = { type: 'send_message', session_id: sessionId, content, client_msg_id: clientMsgId, req_id: Number.MAX_SAFE_INTEGER };
    const bytes = utf8Length(JSON.stringify(frame));
    if (bytes > this.maxFrameBytes) {
      return Promise.reject(
        new ChatError(
          'payload_too_large',
          `the message is ${bytes} bytes as a frame; the limit is ${this.maxFrameBytes}`,
          undefined,
          clientMsgId,
        ),
      );
    }
    return this.outbox.add(sessionId, content, clientMsgId);
  }

  /** A page of stored messages, oldest first within the page; without `beforeSeq` the newest page. */
  async history(
    sessionId: number,
    options: { beforeSeq?: number; limit?: number } = {},
  ): Promise<{ messages: Message[]; hasMore: boolean }> {
    const frame: ClientFrame = {
      type: 'history',
      session_id: sessionId,
      ...(options.beforeSeq === undefined ? {} : { before_seq: options.beforeSeq }),
      ...(options.limit === undefined ? {} : { limit: options.limit }),
    };
    const reply = await this.request(() => frame, 'history', { idempotent: true });
    return { messages: reply.messages, hasMore: reply.has_more };
  }

  /** Sessions, newest first: a customer's own, or all of them for agents and admins (one page: see `listSessionsPage`). */
  async listSessions(options: SessionListOptions = {}): Promise<(Session & { last_seq: number })[]> {
    return (await this.listSessionsPage(options)).sessions;
  }

  /**
   * A page of `listSessions`, and whether more come after it: the next page is the one
   * `beforeId` the last session of this one.
   */
  async listSessionsPage(options: SessionListOptions = {}): Promise<{ sessions: (Session & { last_seq: number })[]; hasMore: boolean }> {
    const frame: ClientFrame = {
      type: 'list_sessions',
      ...(options.status === undefined ? {} : { status: options.status }),
      ...(options.beforeId === undefined ? {} : { before_id: options.beforeId }),
      ...(options.limit === undefined ? {} : { limit: options.limit }),
    };
    const reply = await this.request(() => frame, 'sessions', { idempotent: true });
    // Missing from a gateway older than paging (a rolling upgrade), which ignores `beforeId`: its
    // answer to one is the first page again, not the next.
    const hasMore = (reply as { has_more?: boolean }).has_more;
    if (hasMore === undefined && options.beforeId !== undefined)
      throw new ChatError('unavailable', 'this gateway cannot page sessions yet; retry later');
    return { sessions: reply.sessions, hasMore: hasMore ?? false };
  }

  /** A round trip to the gateway. */
  async ping(): Promise<void> {
    await this.request(() => ({ type: 'ping' }), 'pong', { idempotent: true });
  }

  /** Closes the connection for good: no reconnect; pending requests and sends reject with `closed`. */
  close(): void {
    if (this.currentState === 'closed') return;
    this.shutdown(new ChatError('closed', 'the client was closed'));
  }

  /** The highest seq delivered to the app for a joined session (0 if none). */
  lastSeq(sessionId: number): number {
    return this.sessions.get(sessionId)?.cursor ?? 0;
  }

  /**
   * Remembers a session from the reply to join(). Its cursor never goes below what was delivered
   * already: joining a joined session again leaves its membership on the gateway receiving
   * messages until the reply, and the replay after the reply repeats those.
   */
  private remember(sessionId: number, lastSeq: number, requested: number | undefined, reqId: ReqId): void {
    const session = this.sessions.get(sessionId);
    const start = Math.min(requested ?? session?.cursor ?? lastSeq, lastSeq);
    if (session) session.cursor = Math.max(session.cursor, start);
    else this.sessions.set(sessionId, { cursor: start, retry: undefined, failures: 0, unexpected: 0, joinedAt: undefined });
    this.joinAnswered(sessionId, reqId);
  }

  /** The gateway answered a join of the session on this socket: it is the one whose replay may still fail. */
  private joinAnswered(sessionId: number, reqId: ReqId): void {
    const previous = this.answeredJoins.get(sessionId);
    if (previous !== undefined && previous !== reqId) this.joins.delete(previous);
    this.answeredJoins.set(sessionId, reqId);
    this.joins.set(reqId, sessionId);
    const session = this.sessions.get(sessionId);
    if (!session) return;
    session.joinedAt = performance.now();
    // A rejoin waiting to retry an earlier failure is not needed any more.
    clearTimeout(session.retry);
    session.retry = undefined;
  }

  /**
   * A join that timed out may still be carried out, its reply coming too late to be matched: the
   * gateway would deliver the session to a socket that drops its messages, and a later join
   * without `last_seq` would start after what that membership was sent, so one message could
   * be shown to nobody. A leave undoes it, as frames are handled in order. Not when the session
   * is remembered (its membership is wanted) or another join of it is under way.
   */
  private undoJoin(sessionId: number, intent: object): void {
    const otherJoins = [...(this.joining.get(sessionId) ?? [])].some((other) => other !== intent);
    if (this.currentState !== 'ready' || this.sessions.has(sessionId) || otherJoins) return;
    this.sendLeave(sessionId).catch(() => undefined);
  }

  /** The session was left: no join of it is pending on this socket any more. */
  private forgetJoin(sessionId: number): void {
    const reqId = this.answeredJoins.get(sessionId);
    if (reqId !== undefined) this.joins.delete(reqId);
    this.answeredJoins.delete(sessionId);
  }

  private request<T extends ReplyType>(build: () => ClientFrame, expect: T, options: RequestOptions<T>): Promise<Reply<T>> {
    if (this.currentState === 'closed') return Promise.reject(new ChatError('closed', 'the client is closed'));
    return this.requests.request(build, expect, options);
  }

  // --- connection lifecycle ---

  private open(): void {
    // A state listener may have closed the client meanwhile.
    if (this.currentState === 'closed') return;
    const url = this.urls[this.urlIndex % this.urls.length] as string;
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocketImpl(url);
    } catch (thrown) {
      // No connection was even tried: a URL the WebSocket refuses (malformed, ws: from an https:
      // page). Every URL refusing in a row will not pass: connect() fails with the reason, rather
      // than the client retrying it for ever without a word.
      const reason = `the WebSocket to ${url} could not be made: ${thrown instanceof Error ? thrown.message : String(thrown)}`;
      const givingUp = ++this.unopenableInARow >= this.urls.length;
      const epoch = this.epoch;
      // Told on a timer of its own: connect() calls this, and a listener that connects again on
      // `closed` would otherwise recurse until the stack ran out.
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = undefined;
        if (givingUp) {
          const error = new ChatError('closed', reason);
          this.shutdown(error);
          this.events.emit('error', error);
          return;
        }
        this.events.emit('error', new ChatError('unavailable', reason));
        // A listener may have closed the client: nothing connects after that.
        if (epoch !== this.epoch) return;
        this.urlIndex++;
        this.open();
      }, 0);
      return;
    }
    this.unopenableInARow = 0;
    this.socket = socket;
    this.authTimedOut = false;
    socket.onopen = () => void this.authenticate(socket);
    socket.onmessage = (event: SocketMessageEvent) => this.onData(socket, event.data);
    socket.onclose = (event: SocketCloseEvent) => this.onClosed(socket, event.code, event.reason);
    // A close event always follows an error.
    socket.onerror = noop;
    this.handshakeTimer = setTimeout(() => {
      // Counted from open(), this ends before the provider's own timeout, counted from onopen: the
      // app hears of a provider that did not answer here, as it does of one that failed.
      if (this.awaitingToken === socket)
        this.events.emit(
          'error',
          new ChatError(
            'unavailable',
            `the token provider had not answered when the handshake timed out (${this.timeoutMs} ms after connecting began)`,
          ),
        );
      this.drop(socket, 'not authenticated in time');
    }, this.timeoutMs);
  }

  private async authenticate(socket: WebSocketLike): Promise<void> {
    if (socket !== this.socket) return;
    this.setState('authenticating');
    if (socket !== this.socket) return;
    this.armWatchdog(socket);
    let token: FetchedToken;
    this.awaitingToken = socket;
    try {
      token = this.nextToken ?? (await this.fetchToken());
    } catch (error) {
      // A socket given up meanwhile (by the handshake timer, or close()) is none of the app's concern.
      if (socket !== this.socket) return;
      if (error instanceof ProviderMisuse) {
        this.giveUpAuth(error);
        return;
      }
      // The provider may be down for a moment (the auth service restarting): not a refused token,
      // so reconnect with backoff and ask it again, rather than give up. The app hears of it.
      const reason = error instanceof Error ? error.message : String(error);
      this.events.emit('error', new ChatError('unavailable', `the token provider failed: ${reason}`));
      this.drop(socket, 'no token');
      return;
    } finally {
      if (this.awaitingToken === socket) this.awaitingToken = undefined;
    }
    this.nextToken = undefined;
    if (socket !== this.socket) return;
    this.token = token;
    // The gateway starts each connection with a full bucket.
    this.bucket.reset();
    this.writeNow(socket, { type: 'auth', token: token.value, req_id: AUTH_REQ_ID });
  }

  private async fetchToken(): Promise<FetchedToken> {
    const { token } = this.options;
    const value: unknown = typeof token === 'string' ? token : await this.askProvider(token);
    // The gateway refuses a longer one as an invalid frame, on every connection.
    if (typeof value === 'string' && value.length > MAX_TOKEN_CHARS)
      throw new ProviderMisuse(`the token has ${value.length} characters; a gateway takes at most ${MAX_TOKEN_CHARS}`);
    if (typeof value === 'string' && value.length > 0) return { value, receivedAt: Date.now() };
    // No token for now (undefined, null, ''): a passing failure, like a provider that throws.
    if (value === undefined || value === null || value === '') throw new TypeError('the token provider returned no token');
    // Something else (the auth API's whole reply, say) is the app's mistake, which no retry mends.
    throw new ProviderMisuse(`the token provider returned ${describeValue(value)}, not a token string`);
  }

  /**
   * The provider's token, or a failure once `requestTimeoutMs` passes without one: a provider that
   * never settles is a failed one, so that the reconnect or the refresh waiting for it goes on.
   */
  private async askProvider(provider: () => string | Promise<string>): Promise<unknown> {
    let timer: Timer | undefined;
    let giveUp = noop;
    const now = performance.now();
    if (this.providerCall === undefined || now - this.providerCall.askedAt >= this.timeoutMs)
      this.providerCall = { answer: new Promise<unknown>((resolve) => resolve(provider())), askedAt: now };
    const call = this.providerCall.answer;
    const forget = () => {
      if (this.providerCall?.answer === call) this.providerCall = undefined;
    };
    call.then(forget, forget);
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the token provider did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      giveUp = () => reject(new Error('the client was closed'));
    });
    this.providerWaits.add(giveUp);
    try {
      return await Promise.race([call, timeout]);
    } finally {
      clearTimeout(timer);
      this.providerWaits.delete(giveUp);
    }
  }

  private onAuthenticated(user: ChatUser): void {
    clearTimeout(this.handshakeTimer);
    // Signed in again as someone else (a token provider shared with another sign-in): the
    // sessions, cursors and unsent messages held are the first user's, and must not be joined or
    // sent under this one. Before, they were, with no sign of the change.
    const previous = this.currentUser;
    if (previous !== undefined && previous.id !== user.id) {
      const error = new ChatError(
        'auth_failed',
        `the token is user ${user.id}'s, and this client was signed in as user ${previous.id}: use a new client for another user`,
      );
      this.giveUpAuth(error);
      return;
    }
    this.currentUser = { id: user.id, username: user.username, role: user.role };
    this.authRetried = false;
    this.staleTokenSince = undefined;
    this.authError = undefined;
    this.stableTimer = setTimeout(() => {
      this.attempts = 0;
    }, STABLE_CONNECTION_MS);
    this.wasReady = true;
    this.currentState = 'ready';
    // A rejoin per session, the pending requests and the unacknowledged sends: paced, rejoins first.
    for (const sessionId of this.sessions.keys()) this.rejoinQueue.add(sessionId);
    this.drain();
    if (this.socket) this.scheduleRefresh(this.socket, false);
    this.events.emit('state', 'ready');
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const waiter of waiters) waiter.resolve();
  }

  private onClosed(socket: WebSocketLike, code: number, reason: string): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    // What the gateway said of this socket's token: a 4001 of the next socket, without a word,
    // must not be reported with it.
    const authError = this.authError;
    this.authError = undefined;
    // The token fetched after a 4001 is for the socket opened next. Should that one never get to
    // send it (the gateway unreachable for a while), the provider is asked again: kept, the token
    // could have expired meanwhile, and its refusal ended the client for good.
    this.nextToken = undefined;
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.refreshTimer);
    clearTimeout(this.stableTimer);
    clearTimeout(this.paceTimer);
    this.refreshTimer = undefined;
    this.paceTimer = undefined;
    this.refreshingTo = undefined;
    this.joins.clear();
    this.answeredJoins.clear();
    this.rejoinQueue.clear();
    for (const session of this.sessions.values()) {
      clearTimeout(session.retry);
      session.retry = undefined;
      // A join that held STABLE_JOIN_MS before the connection dropped was a success: the next
      // connection's rejoin starts its backoff over.
      if (session.joinedAt !== undefined && performance.now() - session.joinedAt >= STABLE_JOIN_MS)
        session.failures = session.unexpected = 0;
      session.joinedAt = undefined;
    }
    this.requests.disconnected();
    this.outbox.disconnected();
    if (this.currentState === 'closed') return;
    if (code === AUTH_CLOSE && !this.authTimedOut) {
      void this.recoverAuth(authError ?? (reason || 'authentication failed'));
      return;
    }
    // A 4001 for want of an auth frame in time is no refusal: the same token may be sent again.
    // The app hears of it, though: a provider always slower than the gateway would never connect.
    if (code === AUTH_CLOSE) {
      const epoch = this.epoch;
      this.events.emit('error', new ChatError('unavailable', "the token came after the gateway's time to authenticate; connecting again"));
      // The listener may have closed the client, or closed it and connected again: either is its own doing.
      if (epoch !== this.epoch) return;
    }
    this.scheduleReconnect();
  }

  /** Abandons a socket without waiting for its close handshake (which a dead connection never completes). */
  private drop(socket: WebSocketLike, reason: string): void {
    if (socket !== this.socket) return;
    socket.onopen = noop;
    socket.onmessage = noop;
    socket.onclose = noop;
    try {
      socket.close(CLIENT_CLOSE, reason);
    } catch {
      // Already closing.
    }
    const { terminate } = socket as { terminate?: () => void };
    if (typeof terminate === 'function') {
      // Unref'd: it neither keeps a Node process alive nor outlives one that has nothing else to do.
      const cut = setTimeout(() => terminate.call(socket), CLOSE_HANDSHAKE_MS) as { unref?: () => void };
      cut.unref?.();
    }
    this.onClosed(socket, CLIENT_CLOSE, reason);
  }

  private scheduleReconnect(delay = backoffDelay(this.attempts++, { minMs: this.minDelayMs, maxMs: this.maxDelayMs })): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.urlIndex++;
      this.open();
    }, delay);
    this.setState(this.wasReady ? 'reconnecting' : 'connecting');
  }

  // --- token refresh ---

  /**
   * Arms the refresh of the token in use on this socket, if it has a provider to refresh from and
   * an `exp`. `refreshed`: the token replaced another on this socket.
   */
  private scheduleRefresh(socket: WebSocketLike, refreshed: boolean): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    if (typeof this.options.token !== 'function' || this.options.refreshTokens === false || this.token === undefined) return;
    const times = tokenTimes(this.token.value);
    if (times === undefined) return;
    this.refreshAttempts = 0;
    const delay = refreshDelay(times, {
      receivedAt: this.token.receivedAt,
      now: Date.now(),
      leadMs: this.options.refreshBeforeExpiryMs ?? 60_000,
      refreshed,
    });
    // Timers fire at once past 2^31 - 1 ms (24.8 days): a longer-lived token is looked at again then.
    this.refreshTimer =
      delay > MAX_TIMER_MS
        ? setTimeout(() => this.scheduleRefresh(socket, refreshed), MAX_TIMER_MS)
        : setTimeout(() => void this.refreshToken(socket), delay);
  }

  private async refreshToken(socket: WebSocketLike): Promise<void> {
    this.refreshTimer = undefined;
    if (socket !== this.socket || this.currentState !== 'ready') return;
    let token: FetchedToken | undefined;
    try {
      token = await this.fetchToken();
    } catch (error) {
      if (error instanceof ProviderMisuse && socket === this.socket) {
        this.giveUpAuth(error);
        return;
      }
      token = undefined;
    }
    if (socket !== this.socket || this.currentState !== 'ready') return;
    if (token === undefined || token.value === this.token?.value) {
      // Nothing newer yet: ask again shortly. Should the token run out first, the gateway closes
      // the socket with 4001 and the client reconnects with the provider's next token.
      this.retryRefresh(socket);
      return;
    }
    this.refreshingTo = token;
    this.writeNow(socket, { type: 'auth', token: token.value, req_id: REFRESH_REQ_ID });
  }

  private retryRefresh(socket: WebSocketLike): void {
    clearTimeout(this.refreshTimer);
    const delay = 1_000 + backoffDelay(this.refreshAttempts++, { minMs: 1_000, maxMs: 30_000 });
    this.refreshTimer = setTimeout(() => void this.refreshToken(socket), delay);
  }

  private onRefreshed(socket: WebSocketLike): void {
    if (this.refreshingTo === undefined) return;
    this.token = this.refreshingTo;
    this.refreshingTo = undefined;
    this.scheduleRefresh(socket, true);
  }

  private onRefreshRefused(socket: WebSocketLike, frame: Extract<ServerFrame, { type: 'error' }>): void {
    this.refreshingTo = undefined;
    // A refused token: the gateway closes the socket with 4001 next, and the reconnect path asks the provider again.
    if (frame.code === 'auth_failed') {
      this.authError = frame.message;
      return;
    }
    // A token of another user cannot replace this one; anything else (keys unavailable) may pass later.
    if (frame.code === 'forbidden')
      this.events.emit('error', new ChatError(frame.code, `the refreshed token was refused: ${frame.message}`));
    // The listener may have closed the client: no timer is left behind to keep a process alive.
    if (socket !== this.socket) return;
    this.retryRefresh(socket);
  }

  /** 4001: a token refused or expired. One fresh token from the provider gets one more try. */
  private async recoverAuth(message: string): Promise<void> {
    const epoch = this.epoch;
    const refused = this.token?.value;
    if (!this.authRetried) {
      this.authRetried = true;
      this.setState(this.wasReady ? 'reconnecting' : 'connecting');
      // A state listener may have closed the client: the provider is not asked after that.
      if (epoch !== this.epoch) return;
      try {
        const token = await this.fetchToken();
        if (epoch !== this.epoch) return;
        // The same token would only be refused again.
        if (token.value !== refused) {
          this.staleTokenSince = undefined;
          this.nextToken = token;
          this.scheduleReconnect(0);
          return;
        }
        if (this.mayWaitForFreshToken(token.value, message)) {
          this.events.emit('error', new ChatError('unavailable', 'the token provider handed back the token the gateway refused'));
          if (epoch !== this.epoch) return;
          this.askForFreshTokenLater(message);
          return;
        }
      } catch (error) {
        if (epoch !== this.epoch) return;
        if (error instanceof ProviderMisuse) {
          this.giveUpAuth(error);
          return;
        }
        // No fresh token for now: try again with backoff. The next one refused ends it (authRetried).
        // The app hears of it, as of a provider failing while connecting.
        const reason = error instanceof Error ? error.message : String(error);
        this.events.emit('error', new ChatError('unavailable', `the token provider failed: ${reason}`));
        if (epoch !== this.epoch) return;
        // Waiting for another token than the one refused: asked again without connecting, since
        // a socket would ask the provider once and send whatever it hands out, the refused one too.
        if (this.staleTokenSince !== undefined) this.askForFreshTokenLater(message);
        else this.scheduleReconnect();
        return;
      }
    }
    this.giveUpAuth(new ChatError('auth_failed', message));
  }

  /**
   * Whether to wait for the provider to hand out another token than `token`, which it handed back
   * after the gateway refused it. Only for a token refused as expired (a gateway says "token
   * expired", at auth and on an open socket; one refused otherwise, a bad signature, is given up
   * on at once), from a provider (a fixed token never changes), while the local clock says it is
   * still valid: the provider's cache trusts a clock behind the gateway's, and hands out a fresh
   * one once that clock reaches the expiry. For MAX_STALE_TOKEN_WAIT_MS at most. A token the
   * local clock too says has expired is given up on at once: its provider has nothing newer (the
   * demo page's, which cannot renew), and the app is told to sign in again.
   */
  private mayWaitForFreshToken(token: string, message: string): boolean {
    if (typeof this.options.token !== 'function' || !/\btoken expired\b/.test(message)) return false;
    const expiresAt = tokenTimes(token)?.expiresAt;
    if (expiresAt === undefined || Date.now() >= expiresAt) return false;
    this.staleTokenSince ??= performance.now();
    return performance.now() - this.staleTokenSince < MAX_STALE_TOKEN_WAIT_MS;
  }

  /** Asks the provider again after a backoff, without connecting (see `mayWaitForFreshToken`). */
  private askForFreshTokenLater(message: string): void {
    this.authRetried = false;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(
      () => {
        this.reconnectTimer = undefined;
        void this.recoverAuth(message);
      },
      backoffDelay(this.attempts++, { minMs: this.minDelayMs, maxMs: this.maxDelayMs }),
    );
  }

  /** No token will do: closes the client, and tells the app. */
  private giveUpAuth(error: ChatError): void {
    this.shutdown(error);
    this.events.emit('auth_failed', error);
  }

  private shutdown(error: ChatError): void {
    this.epoch++;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.nextToken = undefined;
    for (const giveUp of this.providerWaits) giveUp();
    this.providerWaits.clear();
    this.providerCall = undefined;
    // Everything is settled before listeners hear of it, so one may call connect() again at once.
    this.currentState = 'closed';
    if (this.socket) this.drop(this.socket, 'client closed');
    this.requests.rejectAll(error);
    this.outbox.rejectAll(error);
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const waiter of waiters) waiter.reject(error);
    this.events.emit('state', 'closed');
  }

  /**
   * Browsers cannot see the server's WebSocket pings, so after a quiet heartbeat interval the
   * client asks for a `pong`; a socket that answers nothing within the request timeout is dead.
   */
  private armWatchdog(socket: WebSocketLike): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (socket !== this.socket) return;
      this.writeNow(socket, { type: 'ping', req_id: PROBE_REQ_ID });
      this.idleTimer = setTimeout(() => this.drop(socket, 'no answer from the server'), this.timeoutMs);
    }, this.heartbeatMs);
  }

  private setState(state: ConnectionState): void {
    if (this.currentState === state) return;
    this.currentState = state;
    this.events.emit('state', state);
  }

  // --- frames ---

  /**
   * Writes a frame of a request, a send or a rejoin if the connection is ready and the frame rate
   * allows it. Otherwise the caller keeps the frame, and drain() writes it later: once ready, or
   * once the rate allows. A new frame does not overtake those already waiting for the rate.
   */
  private transmit(frame: ClientFrame): boolean {
    const socket = this.socket;
    if (!socket || this.currentState !== 'ready') return false;
    // Waiting for the rate (set, too, by a refusal earlier in this drain): frames keep their order.
    if (this.paceTimer !== undefined) return false;
    if (!this.bucket.tryTake()) {
      this.paceTimer ??= setTimeout(() => {
        this.paceTimer = undefined;
        this.drain();
      }, this.bucket.waitMs());
      return false;
    }
    return this.write(socket, frame);
  }

  /**
   * Writes the frames that wait, as far as the rate allows: rejoins first, so that the app's
   * requests find their sessions joined again, then requests, then sends.
   */
  private drain(): void {
    for (const sessionId of this.rejoinQueue) if (!this.rejoin(sessionId)) return;
    this.requests.flush();
    this.outbox.flush();
  }

  /**
   * Writes a frame that cannot wait for the rate (`auth`, the liveness probe). The gateway counts
   * it all the same, so the frames after it wait for it.
   */
  private writeNow(socket: WebSocketLike, frame: ClientFrame): boolean {
    this.bucket.take();
    return this.write(socket, frame);
  }

  private write(socket: WebSocketLike, frame: ClientFrame): boolean {
    if (socket.readyState !== OPEN) return false;
    try {
      socket.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  private onData(socket: WebSocketLike, data: unknown): void {
    if (socket !== this.socket || typeof data !== 'string') return;
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data) as ServerFrame;
    } catch {
      return;
    }
    if (typeof frame !== 'object' || frame === null) return;
    this.armWatchdog(socket);
    switch (frame.type) {
      case 'connected':
        if (Number.isFinite(frame.heartbeat_interval_ms) && frame.heartbeat_interval_ms > 0) this.heartbeatMs = frame.heartbeat_interval_ms;
        return;
      case 'auth_success':
        if (frame.req_id === AUTH_REQ_ID && this.currentState === 'authenticating') {
          if (isUser(frame.user)) this.onAuthenticated(frame.user);
          else {
            // A handshake that cannot complete: the socket is given up and the client connects again with backoff.
            this.drop(socket, 'malformed auth_success');
            this.dropped('auth_success', 'it has no user');
          }
        } else if (frame.req_id === REFRESH_REQ_ID) this.onRefreshed(socket);
        return;
      case 'new_message':
        if (isMessage(frame.message)) this.deliver(frame.message);
        else this.dropped('new_message', 'it has no message with a numeric session_id and seq');
        return;
      case 'message_ack': {
        if (!isAck(frame)) {
          this.dropped('message_ack', 'it has no numeric session_id, message_id and seq with a client_msg_id');
          // send() cannot resolve without them, and the session's next sends wait behind it: the
          // connection is given up, and the message sent again on the next one with its
          // client_msg_id, which the gateway answers with the stored message's ack.
          if (this.outbox.waitsFor(frame.session_id, frame.client_msg_id, frame.req_id)) this.drop(socket, 'malformed message_ack');
          return;
        }
        const sent = this.outbox.handleAck(frame);
        if (sent)
          this.events.emit('ack', {
            sessionId: frame.session_id,
            clientMsgId: frame.client_msg_id,
            messageId: frame.message_id,
            seq: frame.seq,
          });
        return;
      }
      case 'error':
        this.onError(socket, frame);
        return;
      case 'joined_session': {
        // Without it the session's cursor could not be set: a join() it answers ends with its timeout.
        if (!Number.isFinite(frame.last_seq)) {
          this.dropped('joined_session', 'it has no numeric last_seq');
          return;
        }
        // A rejoin after a reconnect: its replayed messages follow.
        const reqId = frame.req_id;
        const rejoined = reqId === undefined ? undefined : this.joins.get(reqId);
        if (reqId === undefined || rejoined === undefined) break;
        this.joinAnswered(rejoined, reqId);
        return;
      }
      case 'pong':
        if (frame.req_id === PROBE_REQ_ID) return;
        break;
      case 'history':
      case 'sessions':
      case 'session_created': {
        const problem = replyProblem(frame);
        if (problem === undefined) break;
        // The request it answers fails at once rather than at its deadline.
        this.dropped(frame.type, problem);
        // A session may have been created all the same: the app can find it with listSessions().
        const message = `the gateway's ${frame.type} reply was malformed: ${problem}${frame.type === 'session_created' ? '; the session may have been created' : ''}`;
        if (frame.req_id !== undefined) this.requests.handle({ type: 'error', code: 'invalid_message', message, req_id: frame.req_id });
        return;
      }
    }
    this.requests.handle(frame);
  }

  /** A frame from the server without what the client needs from it is dropped; the app hears of it. */
  private dropped(type: string, problem: string): void {
    this.events.emit('error', new ChatError('invalid_message', `dropped a ${type} frame from the server: ${problem}`));
  }

  /** Messages of joined sessions, each once: anything at or below the session's cursor was delivered already. */
  private deliver(message: Message): void {
    const session = this.sessions.get(message.session_id);
    if (!session || message.seq <= session.cursor) return;
    session.cursor = message.seq;
    this.events.emit('message', message);
  }

  private onError(socket: WebSocketLike, frame: Extract<ServerFrame, { type: 'error' }>): void {
    const reqId = frame.req_id;
    if (reqId === REFRESH_REQ_ID) {
      this.onRefreshRefused(socket, frame);
      return;
    }
    // Before its auth is answered the client has sent nothing else: a frame refused for its size without a req_id (the
    // gateway counts an unauthenticated socket's bytes before the frame is whole) is the auth frame.
    const authTooLarge = reqId === undefined && frame.code === 'payload_too_large' && this.currentState === 'authenticating';
    if (
      reqId === AUTH_REQ_ID ||
      authTooLarge ||
      (reqId === undefined && (frame.code === 'auth_failed' || frame.code === 'auth_required'))
    ) {
      if (frame.code === 'auth_failed' || frame.code === 'auth_required') {
        this.authError = frame.message;
        if (frame.code === 'auth_required' && reqId === undefined) this.authTimedOut = true;
      }
      // The gateway closes with 4001 after an auth failure. Its keys unavailable, the user's sockets
      // on it at their limit or its own failure are worth another try later; the app hears why.
      else if (isTransient(frame.code) || frame.code === 'internal') {
        this.events.emit('error', new ChatError(frame.code, `authentication refused for now: ${frame.message}`));
        this.drop(socket, 'authentication unavailable');
      }
      // Anything else (the auth frame itself refused: over the gateway's frame size, say) would be
      // refused the same way on every connection.
      else this.giveUpAuth(new ChatError('auth_failed', `the gateway refused the auth frame (${frame.code}): ${frame.message}`));
      return;
    }
    if (reqId === PROBE_REQ_ID) return;
    const joinedSession = reqId === undefined ? undefined : this.joins.get(reqId);
    if (reqId !== undefined && joinedSession !== undefined) {
      this.joins.delete(reqId);
      if (this.answeredJoins.get(joinedSession) === reqId) this.answeredJoins.delete(joinedSession);
      this.onJoinFailed(joinedSession, new ChatError(frame.code, frame.message, retryAfterOf(frame)));
      return;
    }
    if (this.outbox.handleError(frame) || this.requests.handle(frame)) return;
    this.events.emit('error', new ChatError(frame.code, frame.message));
  }

  /** Joins the socket to a remembered session again, from the last seq delivered; false if the frame has to wait. */
  private rejoin(sessionId: number): boolean {
    const session = this.sessions.get(sessionId);
    if (!session) {
      this.rejoinQueue.delete(sessionId);
      return true;
    }
    // Sent now, perhaps from the queue under the rate: the retry armed meanwhile would send it twice.
    clearTimeout(session.retry);
    session.retry = undefined;
    const reqId = ++this.reqCounter;
    if (this.transmit({ type: 'join_session', session_id: sessionId, last_seq: session.cursor, req_id: reqId })) {
      this.rejoinQueue.delete(sessionId);
      this.joins.set(reqId, sessionId);
      return true;
    }
    // Over the rate it waits its turn; without a connection the next one rejoins every session anyway.
    if (this.currentState === 'ready') this.rejoinQueue.add(sessionId);
    return false;
  }

  /** A join or rejoin failed, possibly after its reply (a replay cut short): the socket is not joined. */
  private onJoinFailed(sessionId: number, error: ChatError): void {
    const session = this.sessions.get(sessionId);
    if (!session) return;
    // Only a join that held STABLE_JOIN_MS counts as a success that starts the backoff over.
    if (session.joinedAt !== undefined && performance.now() - session.joinedAt >= STABLE_JOIN_MS) session.failures = session.unexpected = 0;
    // `unavailable` and `rate_limited` are retried for as long as it takes; `forbidden`,
    // `not_found` and `invalid_message` never pass. Any other code (`internal`: an unexpected
    // failure, which may pass, or a replay that fails every time) is retried a few times, the app
    // told of each. Retried for good, a rejoin went out every 10 s for the connection's life, the
    // app told nothing and the session silent.
    const unexpected = !isTransient(error.code) && !PERMANENT_JOIN_ERRORS.has(error.code);
    if (PERMANENT_JOIN_ERRORS.has(error.code) || (unexpected && ++session.unexpected >= MAX_UNEXPECTED_REJOIN_FAILURES)) {
      this.sessions.delete(sessionId);
      this.events.emit('error', new ChatError(error.code, `session ${sessionId} could not be joined again: ${error.message}`));
      return;
    }
    if (unexpected) {
      this.events.emit(
        'error',
        new ChatError(error.code, `session ${sessionId} could not be joined again, trying again: ${error.message}`),
      );
      // A listener may have left the session, or closed the client.
      if (this.sessions.get(sessionId) !== session) return;
    }
    session.joinedAt = undefined;
    clearTimeout(session.retry);
    const backoff = backoffDelay(++session.failures, { minMs: this.minDelayMs, maxMs: this.maxDelayMs });
    session.retry = setTimeout(() => this.rejoin(sessionId), timerDelay(Math.max(error.retryAfterMs ?? 0, backoff)));
  }
}

/** A token provider that returned something other than a token: closes the client, where a provider that throws does not. */
class ProviderMisuse extends ChatError {
  constructor(message: string) {
    super('auth_failed', message);
  }
}

/** What a value other than a string, `undefined` or `null` is, for an error message, without its content (it may hold a secret). */
function describeValue(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
