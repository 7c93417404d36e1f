import type { Socket } from 'node:net';
import WebSocket from 'ws';
import type { AckRecord, AttemptRecord, CheckInput, DeliveredRecord, StrayRecord, TranscriptRecord } from './checker.js';
import { PendingReplies } from './pending-replies.js';
import { RETRYABLE_SEND_ERRORS } from './reliable-send.js';

export interface LoadClientOptions {
  /** Names the client in reports and prefixes its client_msg_ids (`<name>-<n>`): unique per run. */
  name: string;
  /** Gateways to use, in order: each reconnect tries the next one. */
  urls: readonly string[];
  token: string;
  /** The user id behind the token: the checker then also checks each stored row's sender_id. */
  userId?: number;
  /** Sessions to join (and rejoin after every reconnect, from the last seq received). */
  join?: readonly number[];
  /** Sessions to send to, taken in turn. */
  sendTo?: readonly number[];
  /** Most messages started per second (default 5). One is in flight at a time, as the careful client of the docs. */
  ratePerSec?: number;
  /** Padding added to each message's content (default 0). */
  contentChars?: number;
  /** How long one attempt waits for its ack before the message is sent again (default 4000). */
  attemptTimeoutMs?: number;
  /** Ceiling of the first reconnect delay (default 250); delays are drawn at random below the ceiling, which doubles per failure. */
  reconnectMinMs?: number;
  /** Largest reconnect ceiling (default 2000). */
  reconnectMaxMs?: number;
  /** Limit for opening, authenticating and joining (default 10 000). */
  handshakeTimeoutMs?: number;
}

type Reply = { type: string; [key: string]: unknown };
type SendOutcome = { kind: 'ack' } | { kind: 'error'; code: string } | undefined;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface SessionTrack {
  /** Everything above this seq is expected; set by the first join. */
  afterSeq: number | undefined;
  /** Highest seq received. */
  cursor: number | undefined;
  /** Messages received before the first `joined_session`: the protocol sends none. */
  beforeJoin: number;
  messages: DeliveredRecord[];
}

/**
 * A load-generating chat client that records everything the delivery checker needs. It speaks the
 * raw protocol over `ws` (rather than through the SDK, which hides duplicates and reordering from
 * its caller) and behaves as the docs tell a careful client to: it reconnects with jittered
 * backoff to the next gateway, authenticates, rejoins each session with the last seq it received,
 * and sends one message at a time, resending it with the same client_msg_id after an error or a
 * silent attempt until it is acked.
 */
export class LoadClient {
  readonly name: string;
  readonly attempts: AttemptRecord[] = [];
  readonly acks: AckRecord[] = [];
  /** Messages given up on: rejected with a final error, or still unacked when stop() gave up. */
  readonly failed: { clientMsgId: string; sessionId: number; reason: string }[] = [];
  /** Messages received for sessions this client never joined. */
  readonly strays: StrayRecord[] = [];
  /** Error frames received, by code. */
  readonly errors = new Map<string, number>();
  /** Close codes of every socket this client has had. */
  readonly closeCodes: number[] = [];
  /** At each socket's close, the highest seq received in each session: what a rejoin must continue from. */
  readonly cursorsAtClose: ReadonlyMap<number, number>[] = [];
  /** From a message's first attempt (by any client of this process) to its `new_message` here, in ms. */
  readonly latenciesMs: number[] = [];
  /** Sockets that got as far as authenticated and joined. */
  connects = 0;
  /** Rejoins that found the session ahead of what this client had received: the missed messages came by replay. */
  rejoinsBehind = 0;
  resends = 0;
  timeouts = 0;
  ws: WebSocket | undefined;

  private readonly options: Required<Omit<LoadClientOptions, 'userId'>> & { userId: number | undefined };
  private readonly sessions = new Map<number, SessionTrack>();
  private readonly replies = new PendingReplies<number, Reply>();
  private readyWaiters: (() => void)[] = [];
  private inFlight: { clientMsgId: string; settle: (outcome: SendOutcome) => void } | undefined;
  private ready = false;
  private closing = false;
  private stopSending = false;
  private giveUpAt: number | undefined;
  private urlIndex = 0;
  private reqCounter = 0;
  /** Joins answered on the current socket: an error with one of their req_ids later means the replay failed. */
  private joinReqIds = new Set<number>();
  private loop: Promise<void> | undefined;
  private sender: Promise<void> | undefined;

  constructor(options: LoadClientOptions) {
    if (options.urls.length === 0) throw new TypeError('LoadClient needs at least one url');
    this.name = options.name;
    this.options = {
      join: [],
      sendTo: [],
      ratePerSec: 5,
      contentChars: 0,
      attemptTimeoutMs: 4_000,
      reconnectMinMs: 250,
      reconnectMaxMs: 2_000,
      handshakeTimeoutMs: 10_000,
      ...options,
      userId: options.userId,
    };
    for (const sessionId of this.options.join)
      this.sessions.set(sessionId, { afterSeq: undefined, cursor: undefined, beforeJoin: 0, messages: [] });
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** A message has been sent and its ack is awaited. */
  get awaitingAck(): boolean {
    return this.inFlight !== undefined;
  }

  /** Connects (retrying until it works) and resolves once authenticated and joined. */
  async start(timeoutMs = 30_000): Promise<void> {
    this.loop ??= this.run();
    await this.waitReady(timeoutMs);
  }

  /** Starts sending at the configured rate until stop(). */
  startSending(): void {
    this.sender ??= this.sendLoop();
  }

  /**
   * Starts no new message, and keeps resending the one in flight for up to `drainMs` (it is
   * recorded as failed if still unacked then).
   */
  async stop(drainMs = 30_000): Promise<void> {
    this.stopSending = true;
    this.giveUpAt = Date.now() + drainMs;
    await this.sender;
  }

  /** Stops for good: no sending, no reconnecting. */
  async close(): Promise<void> {
    this.stopSending = true;
    this.giveUpAt = Date.now();
    this.closing = true;
    this.inFlight?.settle(undefined);
    this.ws?.terminate();
    await this.sender;
    await this.loop;
  }

  /** Stops reading from the socket, like a client whose network or event loop stalls; the gateway's buffer for it grows. */
  pauseReading(): void {
    this.rawSocket()?.pause();
  }

  resumeReading(): void {
    this.rawSocket()?.resume();
  }

  /** The highest seq received in a session. */
  cursor(sessionId: number): number | undefined {
    return this.sessions.get(sessionId)?.cursor;
  }

  /** Resolves once every session's cursor has reached the given seq. */
  async waitCaughtUp(targets: ReadonlyMap<number, number>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const behind = [...targets].filter(([sessionId, seq]) => this.sessions.has(sessionId) && (this.cursor(sessionId) ?? 0) < seq);
      if (behind.length === 0) return;
      if (Date.now() > deadline)
        throw new Error(
          `${this.name} did not catch up: ${behind.map(([id, seq]) => `session ${id} at ${this.cursor(id)} of ${seq}`).join(', ')}`,
        );
      await sleep(50);
    }
  }

  /** What the checker needs from this client. */
  records(): Required<Pick<CheckInput, 'attempts' | 'acks' | 'transcripts' | 'strays'>> {
    const transcripts: TranscriptRecord[] = [...this.sessions].map(([sessionId, track]) => ({
      member: this.name,
      sessionId,
      afterSeq: track.afterSeq ?? 0,
      beforeJoin: track.beforeJoin,
      messages: track.messages,
    }));
    return { attempts: this.attempts, acks: this.acks, transcripts, strays: this.strays };
  }

  /** The records of several clients, merged. */
  static records(clients: Iterable<LoadClient>): Pick<CheckInput, 'attempts' | 'acks' | 'transcripts' | 'strays'> {
    const merged: { attempts: AttemptRecord[]; acks: AckRecord[]; transcripts: TranscriptRecord[]; strays: StrayRecord[] } = {
      attempts: [],
      acks: [],
      transcripts: [],
      strays: [],
    };
    for (const client of clients) {
      const records = client.records();
      merged.attempts.push(...records.attempts);
      merged.acks.push(...records.acks);
      merged.transcripts.push(...records.transcripts);
      merged.strays.push(...records.strays);
    }
    return merged;
  }

  private rawSocket(): Socket | undefined {
    return (this.ws as unknown as { _socket?: Socket } | undefined)?._socket;
  }

  private waitReady(timeoutMs: number): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((waiter) => waiter !== done);
        reject(new Error(`${this.name} not connected within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.readyWaiters.push(done);
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.closing) {
      const url = this.options.urls[this.urlIndex % this.options.urls.length] as string;
      const reachedReady = await this.connectOnce(url).catch(() => false);
      failures = reachedReady ? 0 : failures + 1;
      if (this.closing) break;
      this.urlIndex++;
      const ceiling = Math.min(this.options.reconnectMaxMs, this.options.reconnectMinMs * 2 ** failures);
      await sleep(Math.random() * ceiling);
    }
  }

  /** One socket, from opening to closing; true if it got as far as authenticated and joined. */
  private async connectOnce(url: string): Promise<boolean> {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: this.options.handshakeTimeoutMs });
    this.ws = ws;
    const closed = new Promise<void>((resolve) => {
      ws.on('close', (code) => {
        this.closeCodes.push(code);
        (this.cursorsAtClose as Map<number, number>[]).push(
          new Map(
            [...this.sessions].flatMap(([sessionId, track]) => (track.cursor === undefined ? [] : [[sessionId, track.cursor] as const])),
          ),
        );
        this.onSocketClosed(ws);
        resolve();
      });
    });
    ws.on('error', () => undefined);
    ws.on('message', (data) => this.onFrame(data.toString()));
    let reachedReady = false;
    try {
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        void closed.then(() => reject(new Error('closed while opening')));
      });
      const timeout = this.options.handshakeTimeoutMs;
      const auth = await this.request(ws, { type: 'auth', token: this.options.token }, timeout);
      if (auth.type !== 'auth_success') throw new Error(`auth answered ${JSON.stringify(auth)}`);
      this.joinReqIds = new Set();
      const joins = await Promise.all(
        [...this.sessions].map(([sessionId, track]) =>
          this.request(
            ws,
            { type: 'join_session', session_id: sessionId, ...(track.cursor === undefined ? {} : { last_seq: track.cursor }) },
            timeout,
            (reqId) => this.joinReqIds.add(reqId),
          ),
        ),
      );
      const refused = joins.find((reply) => reply.type !== 'joined_session');
      if (refused) throw new Error(`join answered ${JSON.stringify(refused)}`);
      if (ws.readyState !== WebSocket.OPEN || this.closing) throw new Error('closed while joining');
      this.ready = true;
      reachedReady = true;
      this.connects++;
      for (const waiter of this.readyWaiters.splice(0)) waiter();
    } catch {
      ws.terminate();
    }
    await closed;
    return reachedReady;
  }

  private onSocketClosed(ws: WebSocket): void {
    if (this.ws !== ws) return;
    this.ready = false;
    this.replies.rejectAll(new Error('socket closed'));
    // The message in flight is sent again on the next socket.
    this.inFlight?.settle(undefined);
  }

  private request(ws: WebSocket, frame: Record<string, unknown>, timeoutMs: number, onReqId?: (reqId: number) => void): Promise<Reply> {
    const reqId = ++this.reqCounter;
    onReqId?.(reqId);
    const reply = this.replies.wait(reqId, String(frame.type), timeoutMs);
    try {
      ws.send(JSON.stringify({ ...frame, req_id: reqId }));
    } catch (error) {
      this.replies.settle(reqId, { error: error as Error });
    }
    return reply;
  }

  private onFrame(text: string): void {
    const frame = JSON.parse(text) as Reply;
    switch (frame.type) {
      case 'new_message': {
        const message = frame.message as { session_id: number; seq: number; client_msg_id: string; id: number; content: string };
        const track = this.sessions.get(message.session_id);
        if (!track) {
          this.strays.push({ member: this.name, sessionId: message.session_id, seq: message.seq });
          return;
        }
        // The protocol answers a join before any of its session's messages: one before the first
        // `joined_session` is a breach of order, and would leave a loss below it unseen.
        if (track.afterSeq === undefined) track.beforeJoin++;
        track.messages.push({ seq: message.seq, clientMsgId: message.client_msg_id, messageId: message.id });
        track.cursor = Math.max(track.cursor ?? 0, message.seq);
        const sentAt = Number(message.content.split('|')[2]);
        if (Number.isFinite(sentAt) && sentAt > 0) this.latenciesMs.push(Date.now() - sentAt);
        return;
      }
      case 'joined_session': {
        // Before the replayed messages that follow it: the first join fixes what this member expects.
        const track = this.sessions.get(frame.session_id as number);
        if (track && track.afterSeq === undefined) {
          track.afterSeq = frame.last_seq as number;
          track.cursor = Math.max(track.cursor ?? 0, frame.last_seq as number);
        } else if (track && (frame.last_seq as number) > (track.cursor ?? 0)) {
          this.rejoinsBehind++;
        }
        break;
      }
      case 'message_ack': {
        const ack = {
          sessionId: frame.session_id as number,
          clientMsgId: frame.client_msg_id as string,
          seq: frame.seq as number,
          messageId: frame.message_id as number,
        };
        this.acks.push(ack);
        if (this.inFlight?.clientMsgId === ack.clientMsgId) this.inFlight.settle({ kind: 'ack' });
        break;
      }
      case 'error': {
        const code = String(frame.code);
        this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
        if (frame.client_msg_id !== undefined && this.inFlight?.clientMsgId === frame.client_msg_id)
          this.inFlight.settle({ kind: 'error', code });
        // The gateway answered the join, then could not replay: it dropped the membership. Start
        // over on a new socket, which rejoins from the last seq received.
        if (typeof frame.req_id === 'number' && this.joinReqIds.has(frame.req_id) && !this.replies.has(frame.req_id)) this.ws?.terminate();
        break;
      }
    }
    if (typeof frame.req_id === 'number') this.replies.settle(frame.req_id, { reply: frame });
  }

  private async sendLoop(): Promise<void> {
    const { sendTo, ratePerSec, contentChars } = this.options;
    if (sendTo.length === 0) return;
    const interval = 1000 / ratePerSec;
    let next = Date.now();
    for (let i = 0; !this.stopSending; i++) {
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      // Never burst to catch up after a stall: the rate is a ceiling.
      next = Math.max(next, Date.now()) + interval;
      if (this.stopSending) break;
      const sessionId = sendTo[i % sendTo.length] as number;
      const clientMsgId = `${this.name}-${i}`;
      this.attempts.push({
        sessionId,
        clientMsgId,
        sender: this.name,
        order: i,
        ...(this.options.userId === undefined ? {} : { senderId: this.options.userId }),
      });
      const content = `${this.name}|${i}|${Date.now()}|${'x'.repeat(contentChars)}`;
      await this.deliver(sessionId, clientMsgId, content);
    }
  }

  /** Sends one message until it is acked, rejected for good, or stop() gives up on it. */
  private async deliver(sessionId: number, clientMsgId: string, content: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const ws = await this.readySocket();
      if (!ws) {
        this.failed.push({ clientMsgId, sessionId, reason: 'gave up: not connected' });
        return;
      }
      if (attempt > 0) this.resends++;
      const outcome = await new Promise<SendOutcome>((resolve) => {
        const timer = setTimeout(() => {
          this.timeouts++;
          settle(undefined);
        }, this.options.attemptTimeoutMs);
        const settle = (value: SendOutcome) => {
          clearTimeout(timer);
          this.inFlight = undefined;
          resolve(value);
        };
        this.inFlight = { clientMsgId, settle };
        ws.send(JSON.stringify({ type: 'send_message', session_id: sessionId, content, client_msg_id: clientMsgId }));
      });
      if (outcome?.kind === 'ack') return;
      if (outcome?.kind === 'error' && !RETRYABLE_SEND_ERRORS.has(outcome.code)) {
        this.failed.push({ clientMsgId, sessionId, reason: outcome.code });
        return;
      }
      if (this.giveUpAt !== undefined && Date.now() > this.giveUpAt) {
        this.failed.push({ clientMsgId, sessionId, reason: 'gave up: not acked in time' });
        return;
      }
      if (outcome) await sleep(200);
    }
  }

  /** The open, joined socket, once there is one; undefined if stop() gives up first. */
  private async readySocket(): Promise<WebSocket | undefined> {
    for (;;) {
      if (this.ready && this.ws?.readyState === WebSocket.OPEN) return this.ws;
      if (this.closing || (this.giveUpAt !== undefined && Date.now() > this.giveUpAt)) return undefined;
      await this.waitReady(250).catch(() => undefined);
    }
  }
}
