import { createInbox, headers, type Msg, type NatsConnection, type Subscription } from 'nats';
import { Deadlines } from './deadlines.js';

/** What the stream answered: where the message is, and whether it held it already (same message id). */
export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

export type PublishFailure = 'no responders' | 'timed out' | 'refused' | 'closed';

export class PublishError extends Error {
  override readonly name = 'PublishError';
  constructor(
    readonly reason: PublishFailure,
    message: string,
  ) {
    super(message);
  }
}

export interface JetStreamPublisher {
  /**
   * Publishes `data` with the `Nats-Msg-Id` header `msgId` (JetStream drops a second copy within
   * the stream's duplicate window) and resolves with the stream's PubAck. Rejects with a
   * `PublishError`: no stream takes the subject, no PubAck within `timeoutMs`, the stream refused
   * the message, or the publisher was closed.
   */
  publish(subject: string, data: Uint8Array, msgId: string, timeoutMs: number): Promise<PubAck>;
  /** Publishes in flight, awaiting their PubAck. */
  pending(): number;
  /** Rejects every publish in flight and stops listening for PubAcks. */
  close(): void;
  /** The subject its PubAcks arrive on (one subscription, under the connection's inbox prefix). */
  readonly subject: string;
}

interface Waiting {
  resolve(ack: PubAck): void;
  reject(error: PublishError): void;
}

/** The resolution of the publishes' deadlines: a publish fails up to this much after its timeout. */
const DEADLINE_RESOLUTION_MS = 100;

/**
 * The clock of the PubAck deadlines. A timeout is a duration, so it runs on the monotonic clock:
 * on the wall clock (Date.now), a step back of the system time (NTP, a VM resumed) held every
 * publish in flight for as long as the step, and a step forward failed them all at once.
 */
const monotonicNow = () => performance.now();

interface PubAckReply {
  stream?: string;
  seq?: number;
  duplicate?: boolean;
  error?: { code?: number; err_code?: number; description?: string };
}

/**
 * JetStream publishes with one reply subscription for all of them: each publish carries a reply
 * subject of its own under that subscription's prefix, and its PubAck settles it there.
 *
 * nats.js's `js.publish` is a request: per publish it makes a request object with a timer of its
 * own and, once answered, builds a `NatsError` (with its stack) to cancel that request, though
 * nothing awaits it: together about 9% of a gateway's CPU profile under load. Here a publish is a map
 * entry, and its deadline one of many on a shared timer (`Deadlines`).
 */
export function createJetStreamPublisher(nc: NatsConnection, inboxPrefix = '_INBOX'): JetStreamPublisher {
  const replyPrefix = `${createInbox(inboxPrefix)}.`;
  const waiting = new Map<number, Waiting>();
  let nextToken = 1;
  let closed = false;

  const deadlines = new Deadlines<number>(
    (token) => {
      const entry = waiting.get(token);
      if (!entry) return;
      waiting.delete(token);
      entry.reject(new PublishError('timed out', 'no PubAck in time'));
    },
    DEADLINE_RESOLUTION_MS,
    monotonicNow,
  );

  const settle = (token: number, msg: Msg) => {
    const entry = waiting.get(token);
    if (!entry) return; // timed out before it was answered
    waiting.delete(token);
    deadlines.delete(token);
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      entry.reject(new PublishError('no responders', 'no stream takes this subject'));
      return;
    }
    let reply: PubAckReply;
    try {
      reply = msg.json<PubAckReply>();
    } catch {
      entry.reject(new PublishError('refused', 'the PubAck is not JSON'));
      return;
    }
    if (reply.error || typeof reply.stream !== 'string' || typeof reply.seq !== 'number') {
      const { code, err_code: errCode, description = 'no description' } = reply.error ?? {};
      entry.reject(new PublishError('refused', `the stream refused the message: ${description} (${code ?? '?'}/${errCode ?? '?'})`));
      return;
    }
    entry.resolve({ stream: reply.stream, seq: reply.seq, duplicate: reply.duplicate === true });
  };

  const subject = `${replyPrefix}*`;
  const subscription: Subscription = nc.subscribe(subject, {
    callback: (error, msg) => {
      if (error) return; // the subscription is closing: close() rejects what is left
      settle(Number(msg.subject.slice(replyPrefix.length)), msg);
    },
  });

  return {
    subject,
    publish(subject, data, msgId, timeoutMs) {
      if (closed) return Promise.reject(new PublishError('closed', 'the publisher is closed'));
      const token = nextToken++;
      const settled = new Promise<PubAck>((resolve, reject) => {
        waiting.set(token, { resolve, reject });
      });
      try {
        const h = headers();
        h.set('Nats-Msg-Id', msgId);
        nc.publish(subject, data, { reply: `${replyPrefix}${token}`, headers: h });
      } catch (error) {
        // A header value nats.js refuses, a closed connection or a payload over max_payload:
        // nothing was sent.
        waiting.delete(token);
        return Promise.reject(new PublishError('refused', (error as Error).message));
      }
      deadlines.set(token, monotonicNow() + timeoutMs);
      return settled;
    },
    pending: () => waiting.size,
    close() {
      closed = true;
      deadlines.close();
      if (!nc.isClosed()) subscription.unsubscribe();
      for (const entry of waiting.values()) entry.reject(new PublishError('closed', 'the publisher is closed'));
      waiting.clear();
    },
  };
}
