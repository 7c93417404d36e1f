import type { ClientFrame, ReqId, ServerFrame } from '@switchboard/protocol';
import { ChatError, isTransient, retryAfterOf } from './errors.js';
import type { Timer, Transport } from './transport.js';

export type ReplyType = Exclude<ServerFrame['type'], 'connected' | 'new_message' | 'message_ack' | 'error'>;
export type Reply<T extends ReplyType> = Extract<ServerFrame, { type: T }>;

export interface RequestOptions<T extends ReplyType> {
  /**
   * Safe to repeat: resent after a reconnect or after `unavailable`, with backoff, until the
   * deadline. A request that is not is rejected with `closed` when the connection drops before its
   * answer, and with `unavailable` when the gateway says so, as it may or may not have been carried
   * out. Any request refused with `rate_limited` is resent, not before its `retry_after_ms`: the
   * gateway did not process it. One whose `retry_after_ms` ends after the deadline is rejected at once.
   */
  idempotent: boolean;
  /** Runs synchronously when the reply arrives, before any later frame is handled; `sent` is the frame it answers. */
  onReply?: (reply: Reply<T>, reqId: ReqId, sent: ClientFrame) => void;
}

interface Pending {
  readonly build: () => ClientFrame;
  readonly expect: ReplyType;
  readonly idempotent: boolean;
  readonly onReply: ((reply: ServerFrame, reqId: ReqId, sent: ClientFrame) => void) | undefined;
  readonly resolve: (reply: ServerFrame) => void;
  readonly reject: (error: ChatError) => void;
  deadline: Timer | undefined;
  /** `performance.now()` at the deadline: a monotonic clock, as the deadline's timer. */
  expiresAt: number;
  /** The `req_id` of the attempt on the wire, if one is. */
  reqId: ReqId | undefined;
  /**
   * The frame last sent, as built then: a reply is matched with it, and `cancel` reads it, rather
   * than build the frame again from the state of now (a join's `last_seq` may have moved since).
   */
  frame: ClientFrame | undefined;
  retry: Timer | undefined;
  attempts: number;
  lastError: ChatError | undefined;
  /**
   * Set when the request was cancelled while on the wire: its reply is still taken, but an error
   * or a dropped connection ends it with this error instead of sending it again.
   */
  cancelled: ChatError | undefined;
}

/** Request/reply frames: each attempt gets its own `req_id`, its reply is matched by it, and every request has a deadline. */
export class RequestTracker {
  private readonly pending = new Set<Pending>();
  private readonly onWire = new Map<ReqId, Pending>();

  constructor(
    private readonly transport: Transport,
    private readonly timeoutMs: number,
  ) {}

  /**
   * `build` is called for every attempt, so a frame can reflect the state at the time it is sent.
   * It must have no side effects: `cancel` may call it to match a request not yet sent.
   */
  request<T extends ReplyType>(build: () => ClientFrame, expect: T, options: RequestOptions<T>): Promise<Reply<T>> {
    return new Promise<Reply<T>>((resolve, reject) => {
      const pending: Pending = {
        build,
        expect,
        idempotent: options.idempotent,
        onReply: options.onReply as Pending['onReply'],
        resolve: resolve as Pending['resolve'],
        reject,
        deadline: undefined,
        expiresAt: performance.now() + this.timeoutMs,
        reqId: undefined,
        frame: undefined,
        retry: undefined,
        attempts: 0,
        lastError: undefined,
        cancelled: undefined,
      };
      // An attempt still on the wire at the deadline ends with `timeout`, whatever an earlier one
      // was answered: the gateway may yet carry it out (a caller may need to undo it).
      pending.deadline = setTimeout(
        () =>
          this.finish(
            pending,
            (pending.reqId === undefined ? pending.lastError : undefined) ??
              new ChatError('timeout', `no answer to ${build().type} within ${this.timeoutMs} ms`),
          ),
        this.timeoutMs,
      );
      this.pending.add(pending);
      this.send(pending);
    });
  }

  /** Sends every request that waits for the connection. */
  flush(): void {
    for (const pending of this.pending) if (pending.reqId === undefined && pending.retry === undefined) this.send(pending);
  }

  /** Takes a reply or error carrying `req_id`; false if it answers none of these requests. */
  handle(frame: ServerFrame): boolean {
    const reqId = 'req_id' in frame ? frame.req_id : undefined;
    const pending = reqId === undefined ? undefined : this.onWire.get(reqId);
    if (reqId === undefined || !pending) return false;
    this.onWire.delete(reqId);
    pending.reqId = undefined;
    if (frame.type === 'error') {
      if (pending.cancelled) {
        this.finish(pending, pending.cancelled);
        return true;
      }
      const retryAfterMs = retryAfterOf(frame);
      const error = new ChatError(frame.code, frame.message, retryAfterMs);
      const notBefore = retryAfterMs ?? 0;
      // A rate-limited frame was not processed at all, so even a request that is not idempotent can be sent again.
      const repeatable = frame.code === 'rate_limited' || (pending.idempotent && isTransient(frame.code));
      if (repeatable && performance.now() + notBefore < pending.expiresAt) {
        pending.lastError = error;
        pending.retry = setTimeout(
          () => {
            pending.retry = undefined;
            this.send(pending);
          },
          this.transport.retryDelay(pending.attempts - 1, notBefore),
        );
      } else this.finish(pending, error);
      return true;
    }
    if (frame.type !== pending.expect) {
      this.finish(pending, new ChatError('internal', `expected a ${pending.expect} reply, got ${frame.type}`));
      return true;
    }
    if (pending.frame) pending.onReply?.(frame, reqId, pending.frame);
    this.finish(pending, undefined, frame);
    return true;
  }

  /** The connection dropped: repeatable requests wait for the next one, the others fail with `closed`. */
  disconnected(): void {
    for (const pending of this.pending) {
      clearTimeout(pending.retry);
      pending.retry = undefined;
      if (pending.reqId === undefined) continue;
      this.onWire.delete(pending.reqId);
      pending.reqId = undefined;
      if (pending.cancelled) this.finish(pending, pending.cancelled);
      else if (!pending.idempotent) {
        this.finish(
          pending,
          new ChatError('closed', 'the connection dropped before the answer; the request may or may not have been carried out'),
        );
      }
    }
  }

  /**
   * Ends the requests whose frame `matches` with `error`: they will not be sent again. One waiting
   * (for a retry or for the connection) ends now. One on the wire is left to its reply, but ends
   * with `error` on an error or a dropped connection rather than being sent again.
   */
  cancel(matches: (frame: ClientFrame) => boolean, error: ChatError): void {
    for (const pending of this.pending) {
      if (!matches(pending.frame ?? pending.build())) continue;
      if (pending.reqId === undefined) this.finish(pending, error);
      else pending.cancelled = error;
    }
  }

  rejectAll(error: ChatError): void {
    for (const pending of this.pending) this.finish(pending, error);
  }

  private send(pending: Pending): void {
    const reqId = this.transport.nextReqId();
    const frame = pending.build();
    if (!this.transport.transmit({ ...frame, req_id: reqId })) return;
    pending.reqId = reqId;
    pending.frame = frame;
    pending.attempts++;
    this.onWire.set(reqId, pending);
  }

  private finish(pending: Pending, error: ChatError | undefined, reply?: ServerFrame): void {
    if (!this.pending.delete(pending)) return;
    clearTimeout(pending.deadline);
    clearTimeout(pending.retry);
    if (pending.reqId !== undefined) this.onWire.delete(pending.reqId);
    if (error) pending.reject(error);
    else if (reply) pending.resolve(reply);
  }
}
