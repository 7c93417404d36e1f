import { randomBytes, randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { setImmediate as endOfTurn } from 'node:timers/promises';
import type { Deadlines, PersistenceClient } from '@switchboard/bus';
import type { Logger } from '@switchboard/logging';
import {
  type ClientFrame,
  type ClientFrameOf,
  CloseCode,
  contentLength,
  decodeClientFrame,
  ErrorCode,
  FrameError,
  HISTORY_DEFAULT_LIMIT,
  hasLoneSurrogate,
  PROTOCOL_VERSION,
  type ReqId,
  readFrameIds,
  type ServerFrame,
  withReqId,
} from '@switchboard/protocol';
import { settlesWithin } from '@switchboard/runtime';
import { DEFAULT_CLOCK_TOLERANCE_S, type TokenVerifier, type VerifiedToken } from '@switchboard/tokens';
import WebSocket from 'ws';
import type { SessionAccess } from '../broker/session-access.js';
import type { SessionHub, Subscriber } from '../broker/session-hub.js';
import type { GatewayConfig } from '../config.js';
import { refuse, toErrorFrame } from '../errors.js';
import type { GatewayMetrics } from '../metrics.js';
import type { TokenRevocations } from '../token-revocations.js';
import { TokenBucket } from './rate-limiter.js';
import type { UserConnections } from './user-connections.js';
import { batchWritesThisTurn, type FlushListener } from './write-batch.js';

/** Sends waiting behind the one in flight, per connection; more get `rate_limited`. */
export const MAX_QUEUED_SENDS = 100;
/**
 * Frames waiting behind one being handled (a slow join or history), per connection: more, or more
 * bytes, get `rate_limited`. The rate limiter bounds how fast frames arrive, not how many wait, and
 * a client that does not wait for replies could otherwise pile up frames of up to MAX_FRAME_BYTES.
 */
export const MAX_WAITING_FRAMES = 100;
export const MAX_WAITING_BYTES = 1024 * 1024;
/** Frames refused by the rate limiter within one window before the socket is closed with 1008. */
export const MAX_RATE_VIOLATIONS = 200;
/** How long past AUTH_TIMEOUT_MS the frames received by then may take to authenticate the socket. */
export const AUTH_CHECK_GRACE_MS = 5_000;
export const RATE_VIOLATION_WINDOW_MS = 10_000;
/**
 * When a socket's close must wait for the answer to a send already published (its `message_ack`,
 * usually within milliseconds): a restart, a token's expiry, a renewal refused. Within the
 * shutdown's margin beyond DRAIN_SECONDS.
 */
export const CLOSE_SEND_WAIT_MS = 2_000;

export interface ConnectionDeps {
  config: GatewayConfig;
  logger: Logger;
  metrics: GatewayMetrics;
  verifier: TokenVerifier;
  persistence: PersistenceClient;
  access: SessionAccess;
  hub: SessionHub;
  /** Token expiries of every connection of the gateway, on one timer. */
  expiries: Deadlines<ClientConnection>;
  /** The authenticated sockets of each user on the gateway, bounded by MAX_CONNECTIONS_PER_USER. */
  userConnections: UserConnections;
  /** Users whose tokens auth has revoked: such a token is refused. */
  revocations: TokenRevocations;
}

type SendJob = ClientFrameOf<'send_message'> & { clientMsgId: string; receivedAt: number };

/** A refused send's client_msg_id, for its error: the client knows which message to resend. */
const clientMsgIdOf = (frame: ClientFrame): { client_msg_id?: string } =>
  frame.type === 'send_message' && frame.client_msg_id !== undefined ? { client_msg_id: frame.client_msg_id } : {};

const SETTLED: Promise<void> = Promise.resolve();

/**
 * Text that PostgreSQL would not store as sent is refused at the edge: a NUL cannot be stored in
 * `text` at all (a send with one in its client_msg_id failed every inbound batch it landed in, and
 * even its dead letter), and a lone surrogate is stored as U+FFFD, so the stored text (and the
 * client_msg_id that a retry is matched by) would differ from what the client sent. Every other
 * character is stored as sent.
 */
function refuseUnstorable(field: string, value: string | undefined): void {
  if (value === undefined) return;
  if (value.includes('\u0000')) refuse(ErrorCode.InvalidMessage, `${field} must not contain NUL characters`);
  if (hasLoneSurrogate(value)) refuse(ErrorCode.InvalidMessage, `${field} must be well-formed Unicode (no lone surrogates)`);
}

/**
 * One client socket: authentication, then frames decoded once at the edge and handled in order of
 * arrival. Sends go to the broker one at a time, each after the previous one is stored, so a
 * sender's messages get seqs in the order it sent them, whatever fails in between.
 */
export class ClientConnection implements Subscriber, FlushListener {
  readonly id = randomBytes(9).toString('base64url');
  private user: VerifiedToken | undefined;
  private logger: Logger | undefined;
  private readonly bucket: TokenBucket;
  private rateViolations = 0;
  private rateWindowStart = Number.NEGATIVE_INFINITY;
  private readonly sends: SendJob[] = [];
  private sending = false;
  /** When the token the socket's deadline follows ends (epoch ms). */
  private expiresAt = 0;
  /** The send being published and waited for, if any. */
  private inFlight: Promise<void> | undefined;
  private handling: Promise<void> = SETTLED;
  private waitingFrames = 0;
  private waitingBytes = 0;
  /** Counts what the socket sends until it has authenticated; then removed. */
  private countUnauthenticated: ((chunk: Buffer) => void) | undefined;
  private authTimer: NodeJS.Timeout | undefined;
  /**
   * Set when this side starts closing the socket. The client's close frame can take up to 30 s to
   * come (ws's close timeout) and `ws` still emits its frames meanwhile: a client ignoring a 4001
   * must not go on sending under the token that was just refused.
   */
  private closing = false;
  private closed = false;
  /**
   * While the send buffer is over the limit: since when (`performance.now()`), and the listener
   * that forgets it once the socket has sent everything.
   */
  private overBuffer: { since: number; drained: () => void } | undefined;
  /**
   * When the socket last answered a ping. Like every interval the connection measures, on
   * `performance.now()`: a wall clock stepped forward by NTP would otherwise take every healthy
   * socket for a dead one at the next heartbeat.
   */
  lastPongAt = performance.now();
  /** Whether the gateway's last ping has had its pong: any pong after it was sent unasked. */
  private pingAnswered = true;

  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    private readonly deps: ConnectionDeps,
  ) {
    this.bucket = new TokenBucket(deps.config.rateLimitPerSec, deps.config.rateLimitPerSec * 2);
    ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    ws.on('pong', () => {
      // `ws` goes on emitting a closing socket's pongs, until the client's close frame (up to 30 s).
      if (this.closing) return;
      this.lastPongAt = performance.now();
      // A pong answers the gateway's ping, once a heartbeat, and costs the client nothing; one
      // sent unasked counts against the rate like a frame, so that a flood of them leads to the
      // 1008 close.
      if (this.pingAnswered) {
        if (!this.bucket.tryTake()) this.onRateViolation();
      } else this.pingAnswered = true;
    });
    ws.on('ping', (data) => this.onPing(data));
    ws.on('close', () => this.onClose());
    ws.on('error', (error) => this.log.debug({ err: error }, 'socket error'));
    this.limitUnauthenticated(deps.config.maxFrameBytes);
    this.authTimer = setTimeout(() => this.onAuthTimeout(), deps.config.authTimeoutMs);
    deps.metrics.connections.inc();
    this.send({
      type: 'connected',
      connection_id: this.id,
      heartbeat_interval_ms: deps.config.heartbeatIntervalMs,
      protocol_version: PROTOCOL_VERSION,
    });
  }

  /**
   * AUTH_TIMEOUT_MS after connecting: closes the socket with 4001 unless the frames received by
   * then authenticate it. An `auth` among them is answered first, for up to AUTH_CHECK_GRACE_MS
   * more (the signing keys fetched from auth, say): the timeout closed the socket meanwhile,
   * telling a client whose token was good to fetch another. Not longer: a client that queued a
   * hundred `auth` frames while the keys could not be fetched would stay unauthenticated for
   * minutes.
   */
  private onAuthTimeout(): void {
    this.authTimer = undefined;
    void settlesWithin(this.handling, AUTH_CHECK_GRACE_MS).then(() => {
      if (this.user || this.closing) return;
      this.sendError(ErrorCode.AuthRequired, 'no auth frame in time', undefined);
      this.close(CloseCode.AuthFailed, 'authentication timed out');
    });
  }

  /** Made on first use: most connections never log, and an idle one should cost little. */
  private get log(): Logger {
    this.logger ??= this.deps.logger.child({ module: 'conn', conn: this.id });
    return this.logger;
  }

  get isAuthenticated(): boolean {
    return this.user !== undefined;
  }

  send(frame: ServerFrame): void {
    this.sendEncoded(JSON.stringify(frame), frame.type);
  }

  sendEncoded(data: string | Buffer, type: ServerFrame['type']): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    batchWritesThisTurn(this.socket, this);
    // A Buffer is a frame already UTF-8 encoded for many sockets; it still goes out as text.
    this.ws.send(data, { binary: false });
    this.deps.metrics.frameOut(type);
  }

  /**
   * Resolves once the frames held this turn have been handed to the socket and checked (`flushed`:
   * a client too slow for them is closed there), and then at once while its unsent bytes are
   * within `MAX_BUFFERED_BYTES`; otherwise once they have drained, the socket has closed, or the
   * slow-client grace period has passed (and then the socket is checked as a slow client).
   */
  async caughtUp(): Promise<void> {
    // After the batch's own setImmediate, which was queued when the first frame of it was held.
    await endOfTurn();
    if (!this.takesWork()) return;
    if (this.ws.bufferedAmount <= this.deps.config.maxBufferedBytes) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.socket.off('drain', done);
        this.ws.off('close', done);
        resolve();
      };
      const timer = setTimeout(done, this.deps.config.slowClientGraceMs);
      this.socket.once('drain', done);
      this.ws.once('close', done);
    });
    this.checkBackpressure();
  }

  /**
   * The frames held this turn have been handed to the socket: what it still buffers is what the
   * client has not read. Measured while they were held, a page of history sent in one turn made
   * a client reading at once look slow.
   */
  flushed(): void {
    this.checkBackpressure();
  }

  /**
   * A client that does not read lets its send buffer grow. Over the limit for longer than the
   * grace period, or over four times the limit at all, it is closed with 1013 so that one slow
   * client cannot grow the gateway's memory; it reconnects and resyncs with `last_seq`.
   */
  checkBackpressure(now = performance.now()): void {
    // A socket already closing (for this or another reason) is not a slow client to count again.
    if (this.closing) return;
    const buffered = this.ws.bufferedAmount;
    const { maxBufferedBytes, slowClientGraceMs } = this.deps.config;
    if (buffered <= maxBufferedBytes) {
      this.forgetOverBuffer();
      return;
    }
    if (!this.overBuffer) {
      // Checks come after writes: a client that read it all, and was then sent nothing for a while,
      // was still taken to be over since then, and closed at once by the next burst.
      const drained = () => {
        this.overBuffer = undefined;
      };
      this.overBuffer = { since: now, drained };
      this.socket.once('drain', drained);
    }
    if (buffered > maxBufferedBytes * 4 || now - this.overBuffer.since >= slowClientGraceMs) {
      this.deps.metrics.slowClientsClosed.inc();
      this.log.info({ buffered }, 'closing a slow client');
      // The close handshake cannot get through a full buffer either.
      this.closeWithoutHandshake(CloseCode.TryAgainLater, 'client too slow to read; reconnect and resync');
    }
  }

  private forgetOverBuffer(): void {
    if (!this.overBuffer) return;
    this.socket.off('drain', this.overBuffer.drained);
    this.overBuffer = undefined;
  }

  /** Closes, and ends the connection a second later: for a socket whose close handshake cannot get through. */
  private closeWithoutHandshake(code: number, reason: string): void {
    this.close(code, reason);
    setTimeout(() => this.ws.terminate(), 1_000).unref();
  }

  /**
   * Its token has expired (called by `ConnectionDeps.expiries`): closes with 4001 as a restart
   * closes with 1012 (`closeForRestart`), the send in flight answered first. Closed at once, the
   * socket lost the `message_ack` of a message stored a moment later, and its queued sends were
   * dropped unanswered; a client that sent one without a `client_msg_id` stored it twice. Nothing
   * new is taken meanwhile: the sessions are left, and frames are answered `unavailable`.
   */
  async expire(waitMs: number): Promise<void> {
    await this.closeForToken(waitMs, 'token expired; reconnect with a new token', 'token expired');
  }

  /**
   * Closes the socket with 4001, as an expiry does, when it authenticated with a token of the user
   * that auth has since revoked (below version `validFrom`). A socket that renewed its token with
   * one issued since is left open.
   */
  async revokeIfUsing(userId: number, validFrom: number, waitMs: number): Promise<void> {
    if (this.closing || this.user?.userId !== userId || this.user.tokenVersion >= validFrom) return;
    await this.closeForToken(waitMs, 'token revoked; sign in again', 'token revoked');
  }

  /** `auth_failed` and a 4001 close once the work under way is answered. */
  private async closeForToken(waitMs: number, message: string, reason: string): Promise<void> {
    await this.closeAfterWork(waitMs, () => {
      this.sendError(ErrorCode.AuthFailed, message, undefined);
      this.close(CloseCode.AuthFailed, reason);
    });
  }

  close(code: number, reason: string): void {
    this.stopTakingWork();
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code, reason);
  }

  /**
   * Closes with 1012 for a restart of the gateway. Sends still queued are answered `unavailable`
   * (not published: to send again on the next connection, with the same `client_msg_id`), and a
   * send already published gets its answer first, for up to `waitMs`: a message stored with its
   * `message_ack` lost in the restart would otherwise be stored again by a client that sent it
   * without a `client_msg_id`. So does the frame being handled, within the same wait: a
   * `create_session` whose session was made with its reply lost would be made again by a client
   * retrying it. Frames behind it are answered `unavailable` as they come up.
   */
  async closeForRestart(waitMs: number, reason = 'server restarting; reconnect'): Promise<void> {
    await this.closeAfterWork(waitMs, () => this.close(CloseCode.ServiceRestart, reason));
  }

  /** Stops taking work, answers the queued sends `unavailable`, waits up to `waitMs` for the work under way, then `closeNow`. */
  private async closeAfterWork(waitMs: number, closeNow: () => void): Promise<void> {
    const closingAlready = this.closing;
    if (!closingAlready) for (const job of this.stopTakingWork()) this.refuseUnpublished(job);
    // A second close (a restart's drain meeting a token's expiry, say) waits as the first does,
    // so that a drain waiting for it does not end the connection before the first one answers.
    await settlesWithin(Promise.allSettled([this.inFlight ?? SETTLED, this.handling]), waitMs);
    if (!closingAlready) closeNow();
  }

  /**
   * Whether the socket still takes work. A client that sent a close frame leaves the socket
   * CLOSING, and `ws` emits 'close' only once the client ends TCP, up to 30 s later: meanwhile a
   * replay would fetch page after page unpaced (nothing it sends is written, so it never waits
   * for the client), and frames queued behind it would be handled for nobody. Seen here, the
   * socket stops taking work as it does when the gateway closes it.
   */
  private takesWork(): boolean {
    if (this.closing) return false;
    if (this.ws.readyState === WebSocket.OPEN) return true;
    this.stopTakingWork();
    return false;
  }

  /**
   * The socket is closing: no more frames are handled, and its sessions are left now, not when
   * TCP closes (up to 30 s for a client ignoring the close frame): nothing more is delivered or
   * replayed to it (a replay would no longer wait for it to read), and a replay in progress stops
   * fetching. `onClose` leaves them again, which finds nothing to do; the connection gauges are
   * counted there only. Returns the sends still queued, which will not be published.
   */
  private stopTakingWork(): SendJob[] {
    this.closing = true;
    this.deps.hub.leaveAll(this);
    return this.sends.splice(0);
  }

  /** A send not published because its socket is closing: the client sends it again on its next connection. */
  private refuseUnpublished(job: SendJob): void {
    this.sendError(ErrorCode.Unavailable, 'the connection is closing; send it again after reconnecting', job.req_id, {
      client_msg_id: job.clientMsgId,
    });
  }

  terminate(): void {
    this.ws.terminate();
  }

  ping(): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.pingAnswered = false;
    this.ws.ping();
  }

  private sendError(
    code: ErrorCode,
    message: string,
    reqId: ReqId | undefined,
    extra: { client_msg_id?: string; retry_after_ms?: number | undefined } = {},
  ): void {
    this.deps.metrics.errors.inc({ code });
    this.send({ type: 'error', code, message, ...withReqId(reqId), ...extra });
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    // While a restart waits for the send in flight the socket is still open: a frame arriving then
    // is answered (see `handle`), rather than dropped unanswered.
    if (this.closing && this.ws.readyState !== WebSocket.OPEN) return;
    // Every frame counts against the rate, including those refused before they decode (binary,
    // oversize, not JSON): otherwise a flood of such frames bypassed the limiter, each one still
    // answered with an error and none of them ever leading to the 1008 close.
    const allowed = this.bucket.tryTake();
    if (isBinary) {
      this.refuseAtEdge(allowed, ErrorCode.InvalidMessage, 'binary frames are not accepted; send JSON text', undefined);
      return;
    }
    if (data.length > this.deps.config.maxFrameBytes) {
      // Read anyway (ws caps it at HARD_FRAME_LIMIT_FACTOR times the limit) for the ids that tell
      // the client which request, or which queued message, was refused.
      const ids = allowed ? readFrameIds(data.toString('utf8')) : {};
      const message = `frame over ${this.deps.config.maxFrameBytes} bytes`;
      this.refuseAtEdge(allowed, ErrorCode.PayloadTooLarge, message, ids.reqId, ids.clientMsgId);
      return;
    }
    let frame: ClientFrame;
    try {
      frame = decodeClientFrame(data.toString('utf8'));
    } catch (error) {
      const { code, message } = toErrorFrame(error);
      this.refuseAtEdge(allowed, code, message, error instanceof FrameError ? error.reqId : undefined);
      return;
    }
    // Each refused frame is answered (with its req_id and client_msg_id, so the client knows what to resend).
    if (!allowed) {
      this.refuseOverRate(frame.req_id, clientMsgIdOf(frame));
      return;
    }
    const size = data.length;
    // A frame on a socket with none waiting is taken whatever its size (MAX_FRAME_BYTES may exceed MAX_WAITING_BYTES).
    if (this.waitingFrames >= MAX_WAITING_FRAMES || (this.waitingFrames > 0 && this.waitingBytes + size > MAX_WAITING_BYTES)) {
      this.deps.metrics.framesIn.inc({ type: 'rate_limited' });
      const message = 'too many frames waiting to be handled; wait for replies before sending more';
      this.sendError(ErrorCode.RateLimited, message, frame.req_id, clientMsgIdOf(frame));
      return;
    }
    this.deps.metrics.framesIn.inc({ type: frame.type });
    if (frame.type === 'auth' && this.user) this.extendEarly(frame.token);
    this.waitingFrames++;
    this.waitingBytes += size;
    // Frames are handled one after another, so replies come in request order (a send only
    // queues its message here; its ack comes when the message is stored).
    this.handling = this.handling
      .then(() => {
        this.waitingFrames--;
        this.waitingBytes -= size;
        return this.handle(frame);
      })
      .catch((error: unknown) => this.onHandlerError(error, frame));
  }

  /**
   * A client's ping is answered with a pong within its rate, like any frame; over it, it goes
   * unanswered and counts towards the 1008 close. Answered by `ws` itself, each ping cost a write
   * of its own, and a client could send them by the thousand unchecked.
   */
  private onPing(data: Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (!this.bucket.tryTake()) {
      this.onRateViolation();
      return;
    }
    batchWritesThisTurn(this.socket, this);
    this.ws.pong(data);
  }

  /** A frame that cannot be handled as it is. Over the rate it is refused as such, and counts towards the 1008 close. */
  private refuseAtEdge(allowed: boolean, code: ErrorCode, message: string, reqId: ReqId | undefined, clientMsgId?: string): void {
    if (!allowed) {
      this.refuseOverRate(reqId, {});
      return;
    }
    this.deps.metrics.framesIn.inc({ type: 'invalid' });
    this.sendError(code, message, reqId, clientMsgId === undefined ? {} : { client_msg_id: clientMsgId });
  }

  private refuseOverRate(reqId: ReqId | undefined, extra: { client_msg_id?: string }): void {
    this.deps.metrics.framesIn.inc({ type: 'rate_limited' });
    const message = `over ${this.deps.config.rateLimitPerSec} frames per second; frame dropped`;
    this.sendError(ErrorCode.RateLimited, message, reqId, { ...extra, retry_after_ms: this.bucket.msUntilToken() });
    this.onRateViolation();
  }

  /**
   * `ws` reads a frame whole, of up to HARD_FRAME_LIMIT_FACTOR times MAX_FRAME_BYTES, before the
   * gateway sees any of it: anyone able to open a socket could make the gateway hold a MiB for
   * each one until the auth timeout. Until it authenticates, a socket may send `limit` bytes in
   * all (the auth frame and what a client sends right behind it); past that it is told, closed
   * with 1009, and no longer read, so what it sends next stays in the kernel's buffers until the
   * connection ends a second later.
   */
  private limitUnauthenticated(limit: number): void {
    let received = 0;
    const count = (chunk: Buffer) => {
      received += chunk.length;
      if (received <= limit) return;
      this.stopCountingUnauthenticated();
      this.sendError(ErrorCode.PayloadTooLarge, `over ${limit} bytes sent before authenticating; send auth first`, undefined);
      // No longer read, the client's close frame never comes through.
      this.closeWithoutHandshake(CloseCode.MessageTooBig, 'too much data before authentication');
      this.ws.pause();
    };
    this.countUnauthenticated = count;
    this.socket.on('data', count);
  }

  private stopCountingUnauthenticated(): void {
    if (!this.countUnauthenticated) return;
    this.socket.off('data', this.countUnauthenticated);
    this.countUnauthenticated = undefined;
  }

  /** A client that keeps flooding far over its rate is closed: it is not a client, or a broken one. */
  private onRateViolation(): void {
    // Closing already (for this or another reason): told once, and logged once.
    if (this.closing) return;
    const now = performance.now();
    if (now - this.rateWindowStart > RATE_VIOLATION_WINDOW_MS) {
      this.rateWindowStart = now;
      this.rateViolations = 0;
    }
    this.rateViolations++;
    if (this.rateViolations >= MAX_RATE_VIOLATIONS) {
      this.log.warn('closing a client flooding over the rate limit');
      this.close(CloseCode.PolicyViolation, 'rate limit exceeded');
    }
  }

  private onHandlerError(error: unknown, frame: ClientFrame): void {
    const { code, message, known, retryAfterMs } = toErrorFrame(error);
    if (!known) this.log.error({ err: error, frameType: frame.type }, 'handling a frame failed');
    const answer = () => this.sendError(code, message, frame.req_id, { ...clientMsgIdOf(frame), retry_after_ms: retryAfterMs });
    // A refused renewal (another role, a key this gateway cannot verify yet) closes the socket
    // with 4001 as an expiry does: the queued sends answered `unavailable`, and the one in flight
    // with its ack first. Closed at once, its ack was lost, and a client that sent it without a
    // `client_msg_id` stored it twice. A socket already closing is closed by what closes it.
    if (code !== ErrorCode.AuthFailed || this.closing) answer();
    else if (this.user === undefined) {
      answer();
      this.close(CloseCode.AuthFailed, 'authentication failed');
    } else
      void this.closeAfterWork(CLOSE_SEND_WAIT_MS, () => {
        answer();
        this.close(CloseCode.AuthFailed, 'authentication failed');
      });
  }

  private async handle(frame: ClientFrame): Promise<void> {
    if (!this.takesWork()) {
      // Frames queued behind a slow one can come up after the socket closed: nobody is left to
      // answer. While a restart waits for the send in flight, the client still reads: it is told.
      if (this.ws.readyState === WebSocket.OPEN) {
        this.sendError(
          ErrorCode.Unavailable,
          'the connection is closing; send it again after reconnecting',
          frame.req_id,
          clientMsgIdOf(frame),
        );
      }
      return;
    }
    if (frame.type === 'auth') return this.authenticate(frame);
    if (frame.type === 'ping') return this.send({ type: 'pong', ...withReqId(frame.req_id), server_time: new Date().toISOString() });
    const user = this.user;
    if (!user) refuse(ErrorCode.AuthRequired, 'send auth first');
    switch (frame.type) {
      case 'create_session':
        return this.createSession(user, frame);
      case 'join_session': {
        await this.deps.access.authorize(user, frame.session_id);
        if (this.closing) refuse(ErrorCode.Unavailable, 'the connection is closing; join again after reconnecting');
        // Frames are handled one at a time, so no other join of this socket is in progress.
        const { count, includes } = this.deps.hub.membership(this, frame.session_id);
        const max = this.deps.config.maxSessionsPerConnection;
        if (!includes && count >= max) refuse(ErrorCode.Forbidden, `at most ${max} sessions joined per connection; leave one first`);
        return this.deps.hub.join(this, frame.session_id, frame.last_seq, frame.req_id);
      }
      case 'leave_session':
        this.deps.hub.leave(this, frame.session_id);
        return this.send({ type: 'left_session', ...withReqId(frame.req_id), session_id: frame.session_id });
      case 'send_message':
        return this.enqueueSend(frame);
      case 'history':
        return this.history(user, frame);
      case 'list_sessions':
        return this.listSessions(user, frame);
    }
  }

  private async authenticate(frame: ClientFrameOf<'auth'>): Promise<void> {
    const verified = await this.deps.verifier.verify(frame.token);
    if (this.deps.revocations.revokes(verified)) refuse(ErrorCode.AuthFailed, 'token revoked; sign in again');
    // A restart or an expiry began while the token was checked: answered, as any frame is then.
    if (this.closing) refuse(ErrorCode.Unavailable, 'the connection is closing; authenticate again after reconnecting');
    if (this.user && this.user.userId !== verified.userId) refuse(ErrorCode.Forbidden, 'a connection cannot change user; reconnect');
    // The sessions this socket joined were authorized for its role: a customer's token must not
    // inherit an agent's memberships. A new socket joins each session again under the new role.
    if (this.user && this.user.role !== verified.role) refuse(ErrorCode.AuthFailed, 'the role changed; reconnect with the new token');
    const renewing = this.user !== undefined;
    if (!renewing) {
      if (!this.deps.userConnections.tryAdd(verified.userId)) {
        const max = this.deps.userConnections.max;
        this.sendError(ErrorCode.RateLimited, `at most ${max} connections per user on this gateway; close one first`, frame.req_id);
        clearTimeout(this.authTimer);
        this.close(CloseCode.PolicyViolation, 'too many connections for this user');
        return;
      }
      this.deps.metrics.authenticatedConnections.inc();
    }
    this.user = verified;
    this.stopCountingUnauthenticated();
    clearTimeout(this.authTimer);
    this.authTimer = undefined; // a cleared timer still holds memory while referenced
    // A token that expires while connected closes the socket (4001); re-sending `auth` with a fresh
    // token first extends it, never shortens it (a later token may have been taken on arrival).
    // The verifier tolerates the same clock skew, so a token it just accepted is not closed at once.
    this.setDeadline(renewing ? Math.max(verified.expiresAt, this.expiresAt) : verified.expiresAt);
    this.send({
      type: 'auth_success',
      ...withReqId(frame.req_id),
      user: { id: verified.userId, username: verified.username, role: verified.role },
    });
  }

  /** Closes the socket with 4001 once the token that ends at `expiresAt` has (within the verifier's tolerance). */
  private setDeadline(expiresAt: number): void {
    this.expiresAt = expiresAt;
    this.deps.expiries.set(this, expiresAt + DEFAULT_CLOCK_TOLERANCE_S * 1000);
  }

  /**
   * A fresh token for the same user and role moves the socket's deadline as soon as it arrives.
   * Its `auth` frame waits in line behind the frames before it (a join whose replay waits for a
   * slow reader) and is answered in order, but the old token could run out, and the socket be
   * closed with 4001, while it waits. A token that does not verify changes nothing here.
   */
  private extendEarly(token: string): void {
    this.deps.verifier.verify(token).then(
      (verified) => {
        const user = this.user;
        if (this.closing || !user || user.userId !== verified.userId || user.role !== verified.role) return;
        // A revoked token extends nothing: its `auth`, in line, is refused and closes the socket.
        if (this.deps.revocations.revokes(verified)) return;
        // Two renewals verified out of order must not leave the earlier token's end.
        if (verified.expiresAt > this.expiresAt) this.setDeadline(verified.expiresAt);
      },
      () => undefined,
    );
  }

  private async createSession(user: VerifiedToken, frame: ClientFrameOf<'create_session'>): Promise<void> {
    if (user.role !== 'user') refuse(ErrorCode.Forbidden, 'only customers (role user) create sessions');
    refuseUnstorable('subject', frame.subject);
    const subject = frame.subject && frame.subject.length > 0 ? frame.subject : null;
    const { session } = await this.deps.persistence.call('sessions.create', { customer_id: user.userId, subject });
    this.deps.access.remember(session.id, session.customer_id);
    this.send({ type: 'session_created', ...withReqId(frame.req_id), session });
  }

  private async history(user: VerifiedToken, frame: ClientFrameOf<'history'>): Promise<void> {
    await this.deps.access.authorize(user, frame.session_id);
    const page = await this.deps.persistence.call('messages.history', {
      session_id: frame.session_id,
      limit: frame.limit ?? HISTORY_DEFAULT_LIMIT,
      ...(frame.before_seq === undefined ? {} : { before_seq: frame.before_seq }),
    });
    this.send({
      type: 'history',
      ...withReqId(frame.req_id),
      session_id: frame.session_id,
      messages: page.messages,
      has_more: page.has_more,
    });
  }

  private async listSessions(user: VerifiedToken, frame: ClientFrameOf<'list_sessions'>): Promise<void> {
    const { sessions, has_more } = await this.deps.persistence.call('sessions.list', {
      limit: frame.limit ?? HISTORY_DEFAULT_LIMIT,
      ...(frame.status === undefined ? {} : { status: frame.status }),
      ...(frame.before_id === undefined ? {} : { before_id: frame.before_id }),
      // Customers see their own sessions; agents and admins see all.
      ...(user.role === 'user' ? { customer_id: user.userId } : {}),
    });
    // A persistence older than paging (a rolling upgrade) ignores `before_id`, and would answer
    // the first page again: a client paging until `has_more` is false would never stop.
    if (has_more === undefined && frame.before_id !== undefined)
      refuse(ErrorCode.Unavailable, 'paging needs persistence to be upgraded; retry later');
    this.send({ type: 'sessions', ...withReqId(frame.req_id), sessions, has_more: has_more ?? false });
  }

  private enqueueSend(frame: ClientFrameOf<'send_message'>): void {
    const { maxContentChars } = this.deps.config;
    if (contentLength(frame.content) > maxContentChars) refuse(ErrorCode.PayloadTooLarge, `content over ${maxContentChars} characters`);
    refuseUnstorable('content', frame.content);
    refuseUnstorable('client_msg_id', frame.client_msg_id);
    if (this.sends.length >= MAX_QUEUED_SENDS) refuse(ErrorCode.RateLimited, 'too many messages waiting to be stored; slow down');
    this.sends.push({ ...frame, clientMsgId: frame.client_msg_id ?? randomUUID(), receivedAt: performance.now() });
    void this.pumpSends();
  }

  private async pumpSends(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      for (let job = this.sends.shift(); job; job = this.sends.shift()) {
        // takesWork, not closing alone: a client's close frame leaves the socket CLOSING until
        // TCP ends, and sends queued behind it would be stored with no ack ever to reach it.
        if (!this.takesWork() || !this.user) break;
        this.inFlight = this.sendOne(this.user, job);
        await this.inFlight;
        this.inFlight = undefined;
      }
    } finally {
      this.sending = false;
    }
  }

  private async sendOne(user: VerifiedToken, job: SendJob): Promise<void> {
    try {
      await this.deps.access.authorize(user, job.session_id);
      // Closed meanwhile (its token expired, the gateway restarting): not published under a
      // socket that is going away; the client sends it again on its next connection.
      if (!this.takesWork()) return this.refuseUnpublished(job);
      const message = await this.deps.hub.send({
        sessionId: job.session_id,
        clientMsgId: job.clientMsgId,
        content: job.content,
        sender: { id: user.userId, role: user.role },
        timeoutMs: this.deps.config.sendTimeoutMs,
      });
      this.deps.metrics.sendConfirmSeconds.observe((performance.now() - job.receivedAt) / 1000);
      this.send({
        type: 'message_ack',
        ...withReqId(job.req_id),
        session_id: message.session_id,
        client_msg_id: message.client_msg_id,
        message_id: message.id,
        seq: message.seq,
      });
    } catch (error) {
      const { code, message, known } = toErrorFrame(error);
      if (!known) this.log.error({ err: error }, 'send failed');
      this.sendError(code, message, job.req_id, { client_msg_id: job.clientMsgId });
    }
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing = true;
    clearTimeout(this.authTimer);
    this.deps.expiries.delete(this);
    this.sends.length = 0;
    this.deps.hub.leaveAll(this);
    this.deps.metrics.connections.dec();
    if (this.user) {
      this.deps.userConnections.remove(this.user.userId);
      this.deps.metrics.authenticatedConnections.dec();
    }
  }
}
