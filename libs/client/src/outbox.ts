import type { ReqId, ServerFrame } from '@switchboard/protocol';
import { ChatError, isTransient, retryAfterOf } from './errors.js';
import type { Timer, Transport } from './transport.js';

export interface SendResult {
  messageId: number;
  seq: number;
  clientMsgId: string;
}

interface Outgoing {
  readonly sessionId: number;
  readonly content: string;
  readonly clientMsgId: string;
  readonly resolve: (result: SendResult) => void;
  readonly reject: (error: ChatError) => void;
  /** The `req_id` of the attempt on the wire, if one is. */
  reqId: ReqId | undefined;
  retry: Timer | undefined;
  attempts: number;
}

type Ack = Extract<ServerFrame, { type: 'message_ack' }>;
type ErrorFrame = Extract<ServerFrame, { type: 'error' }>;

/**
 * Messages waiting for their `message_ack`. Per session one message is on the wire at a time, so a
 * sender's messages are stored in the order they were sent even when some need retries. A message
 * is resent with the same `client_msg_id` after a reconnect and after `unavailable` or
 * `rate_limited` (with backoff, and not before the error's `retry_after_ms`) until it is
 * acknowledged; the gateway stores it once.
 */
export class Outbox {
  private readonly queues = new Map<number, Outgoing[]>();
  private readonly onWire = new Map<ReqId, Outgoing>();

  constructor(private readonly transport: Transport) {}

  add(sessionId: number, content: string, clientMsgId: string): Promise<SendResult> {
    return new Promise((resolve, reject) => {
      const queue = this.queues.get(sessionId) ?? [];
      this.queues.set(sessionId, queue);
      queue.push({ sessionId, content, clientMsgId, resolve, reject, reqId: undefined, retry: undefined, attempts: 0 });
      if (queue.length === 1) this.sendHead(sessionId);
    });
  }

  /** Sends the first message of every session that is neither on the wire nor waiting to be retried. */
  flush(): void {
    for (const sessionId of this.queues.keys()) this.sendHead(sessionId);
  }

  /** Resolves the message an ack is for; returns it, or undefined if no message waits for it. */
  handleAck(ack: Ack): Outgoing | undefined {
    const queue = this.queues.get(ack.session_id);
    const index = queue?.findIndex((message) => message.clientMsgId === ack.client_msg_id) ?? -1;
    const message = queue?.[index];
    if (!queue || !message) return undefined;
    this.remove(queue, index, message);
    message.resolve({ messageId: ack.message_id, seq: ack.seq, clientMsgId: ack.client_msg_id });
    this.sendHead(ack.session_id);
    return message;
  }

  /**
   * Whether a malformed ack may answer a message that waits for its ack: the one its `req_id`
   * was sent with, or one of the session with its `client_msg_id` (either may be the field missing).
   */
  waitsFor(sessionId: unknown, clientMsgId: unknown, reqId?: ReqId): boolean {
    if (reqId !== undefined && this.onWire.has(reqId)) return true;
    return typeof sessionId === 'number' && (this.queues.get(sessionId)?.some((message) => message.clientMsgId === clientMsgId) ?? false);
  }

  /** Takes an error answering a send; false if it answers none. */
  handleError(frame: ErrorFrame): boolean {
    if (frame.req_id === undefined) return false;
    const message = this.onWire.get(frame.req_id);
    if (!message) return false;
    this.onWire.delete(frame.req_id);
    message.reqId = undefined;
    if (isTransient(frame.code)) {
      message.retry = setTimeout(
        () => {
          message.retry = undefined;
          this.sendHead(message.sessionId);
        },
        this.transport.retryDelay(message.attempts - 1, retryAfterOf(frame)),
      );
      return true;
    }
    const queue = this.queues.get(message.sessionId);
    if (queue) this.remove(queue, queue.indexOf(message), message);
    message.reject(new ChatError(frame.code, frame.message, retryAfterOf(frame), message.clientMsgId));
    this.sendHead(message.sessionId);
    return true;
  }

  /** The connection dropped: every unacknowledged message is sent again on the next one. */
  disconnected(): void {
    this.onWire.clear();
    for (const queue of this.queues.values()) {
      for (const message of queue) {
        clearTimeout(message.retry);
        message.retry = undefined;
        message.reqId = undefined;
      }
    }
  }

  /** Rejects every message with `error`, each carrying its own `clientMsgId`. */
  rejectAll(error: ChatError): void {
    const queues = [...this.queues.values()];
    this.disconnected();
    this.queues.clear();
    for (const queue of queues) {
      for (const message of queue) message.reject(new ChatError(error.code, error.message, error.retryAfterMs, message.clientMsgId));
    }
  }

  get size(): number {
    let size = 0;
    for (const queue of this.queues.values()) size += queue.length;
    return size;
  }

  private sendHead(sessionId: number): void {
    const message = this.queues.get(sessionId)?.[0];
    if (!message || message.reqId !== undefined || message.retry !== undefined) return;
    const reqId = this.transport.nextReqId();
    const sent = this.transport.transmit({
      type: 'send_message',
      session_id: message.sessionId,
      content: message.content,
      client_msg_id: message.clientMsgId,
      req_id: reqId,
    });
    if (!sent) return;
    message.reqId = reqId;
    message.attempts++;
    this.onWire.set(reqId, message);
  }

  private remove(queue: Outgoing[], index: number, message: Outgoing): void {
    clearTimeout(message.retry);
    if (message.reqId !== undefined) this.onWire.delete(message.reqId);
    if (index >= 0) queue.splice(index, 1);
    if (queue.length === 0) this.queues.delete(message.sessionId);
  }
}
