import type { Logger } from '@switchboard/logging';
import { BusErrorCode } from '@switchboard/protocol';
import { type Bus, BusError, type DurableMessage, type EndpointSpec, ErrorAnswer, type InboundStreamSettings } from './bus.js';

interface StoredMessage {
  seq: number;
  data: Uint8Array;
  deliveries: number;
}

const DEFAULT_SETTINGS: InboundStreamSettings = { ackWaitMs: 30_000, maxDeliver: 20, duplicateWindowMs: 120_000, maxAgeMs: 0, replicas: 1 };

/** NATS subject matching: `*` matches one token, `>` the rest. */
export function subjectMatches(pattern: string, subject: string): boolean {
  if (pattern === subject) return true;
  const wanted = pattern.split('.');
  const actual = subject.split('.');
  for (let i = 0; i < wanted.length; i++) {
    if (wanted[i] === '>') return actual.length > i;
    if (i >= actual.length || (wanted[i] !== '*' && wanted[i] !== actual[i])) return false;
  }
  return wanted.length === actual.length;
}

/**
 * The bus inside one process, for the all-in-one mode: the same semantics the services rely on
 * from NATS (subscriptions registered before `subscribe` resolves, request/reply with
 * "no responders", a de-duplicating inbound stream with acks, redelivery after the ack wait or a
 * nak, and a delivery limit), kept in memory. Deliveries are asynchronous, as over a network.
 * Nothing in it survives a restart, which costs nothing acked: a message is acked to its sender
 * only once it is in the database.
 */
export function createMemoryBus(options: { logger?: Logger } = {}): Bus {
  const subscriptions = new Set<{ pattern: string; handler: (data: Uint8Array) => void }>();
  const endpoints = new Map<string, EndpointSpec>();
  let settings = DEFAULT_SETTINGS;
  let nextSeq = 1;
  /** msgId → when its duplicate window ends, and the seq its first publish got. */
  const recentIds = new Map<string, { expiry: number; seq: number }>();
  const ready: StoredMessage[] = []; // waiting for delivery, by seq
  const unacked = new Map<number, { message: StoredMessage; timer: NodeJS.Timeout }>();
  /** Pulls waiting for a message. */
  const waiting = new Set<() => void>();
  const wakeAll = () => {
    for (const wake of waiting) wake();
  };
  let closed = false;

  const enqueue = (message: StoredMessage) => {
    let index = ready.length;
    while (index > 0 && (ready[index - 1]?.seq ?? 0) > message.seq) index--;
    ready.splice(index, 0, message);
    wakeAll();
  };

  const settle = (seq: number): StoredMessage | undefined => {
    const entry = unacked.get(seq);
    if (!entry) return undefined;
    clearTimeout(entry.timer);
    unacked.delete(seq);
    return entry.message;
  };

  const redeliverLater = (message: StoredMessage) =>
    setTimeout(() => {
      if (settle(message.seq)) redeliver(message);
    }, settings.ackWaitMs);

  const redeliver = (message: StoredMessage) => {
    if (message.deliveries < settings.maxDeliver) enqueue(message);
  };

  const deliver = (message: StoredMessage): DurableMessage => {
    message.deliveries++;
    unacked.set(message.seq, { message, timer: redeliverLater(message) });
    return {
      data: message.data,
      seq: message.seq,
      redelivered: message.deliveries > 1,
      ack: () => void settle(message.seq),
      nak: () => {
        if (settle(message.seq)) redeliver(message);
      },
      working: () => {
        const entry = unacked.get(message.seq);
        if (!entry) return;
        clearTimeout(entry.timer);
        entry.timer = redeliverLater(message);
      },
      term: () => void settle(message.seq),
    };
  };

  return {
    kind: 'memory',
    publish(subject, data) {
      // As NATS: nothing goes out on a closed connection, and the publisher is told so.
      if (closed) throw new BusError(BusErrorCode.Unavailable, `publishing on ${subject}: bus closed`);
      for (const subscription of subscriptions) {
        if (!subjectMatches(subscription.pattern, subject)) continue;
        // As over NATS, a handler that throws loses its message and nothing else: thrown from a
        // microtask it would be an uncaught exception, which ends the process.
        queueMicrotask(() => {
          // Nor does a subscription get what comes after it has ended.
          if (!subscriptions.has(subscription)) return;
          try {
            subscription.handler(data);
          } catch (failure) {
            options.logger?.error({ err: failure, subject }, 'subscription handler threw');
          }
        });
      }
    },
    async subscribe(pattern, handler) {
      if (closed) throw new BusError(BusErrorCode.Unavailable, `subscribing to ${pattern}: bus closed`);
      const subscription = { pattern, handler };
      subscriptions.add(subscription);
      return { unsubscribe: () => void subscriptions.delete(subscription) };
    },
    async request(subject, data, timeoutMs) {
      if (closed) throw new BusError(BusErrorCode.Unavailable, `request on ${subject}: bus closed`);
      const endpoint = endpoints.get(subject);
      if (!endpoint) throw new BusError(BusErrorCode.Unavailable, `request on ${subject} no responders`);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new BusError(BusErrorCode.Unavailable, `request on ${subject} timed out`)), timeoutMs);
      });
      // A handler that fails answers nothing over NATS, and its caller gets `unavailable` (there
      // at its timeout; here at once). Passed on as it was, it reached callers that tell only
      // `BusError`s apart as an error of another kind: the one-process mode answered otherwise.
      const answer = (async () => endpoint.handler(data))().catch((error: unknown) => {
        options.logger?.error({ err: error, subject }, 'endpoint handler threw');
        throw new BusError(BusErrorCode.Unavailable, `request on ${subject} failed: no answer`, { cause: error });
      });
      try {
        const reply = await Promise.race([answer, timeout]);
        return reply instanceof ErrorAnswer ? reply.data : reply;
      } finally {
        clearTimeout(timer);
      }
    },
    async addService(spec) {
      for (const endpoint of spec.endpoints) endpoints.set(endpoint.subject, endpoint);
      return {
        stop: async () => {
          for (const endpoint of spec.endpoints) if (endpoints.get(endpoint.subject) === endpoint) endpoints.delete(endpoint.subject);
        },
      };
    },
    async ensureInboundStream(inbound) {
      settings = inbound;
    },
    async publishDurable(_subject, data, msgId) {
      if (closed) throw new BusError(BusErrorCode.Unavailable, 'bus closed');
      const now = Date.now();
      for (const [id, recent] of recentIds) {
        if (recent.expiry > now) break;
        recentIds.delete(id);
      }
      const recent = recentIds.get(msgId);
      if (recent) return { duplicate: true, seq: recent.seq };
      const seq = nextSeq++;
      recentIds.set(msgId, { expiry: now + settings.duplicateWindowMs, seq });
      enqueue({ seq, data, deliveries: 0 });
      return { duplicate: false, seq };
    },
    async inboundConsumer() {
      return {
        fetch({ maxMessages, expiresMs }) {
          let ended = false;
          let wake = () => {};
          let expiry: NodeJS.Timeout | undefined;
          const end = () => {
            ended = true;
            wake();
          };
          return {
            async *[Symbol.asyncIterator]() {
              expiry = setTimeout(end, expiresMs);
              let delivered = 0;
              try {
                while (!ended && !closed && delivered < maxMessages) {
                  const next = ready.shift();
                  if (next) {
                    delivered++;
                    yield deliver(next);
                    continue;
                  }
                  await new Promise<void>((resolve) => {
                    wake = resolve;
                    waiting.add(resolve);
                  });
                  waiting.delete(wake);
                }
              } finally {
                clearTimeout(expiry);
              }
            },
            close: async () => end(),
          };
        },
      };
    },
    async inboundStats() {
      return { pending: ready.length, ackPending: unacked.size };
    },
    isConnected: () => !closed,
    maxPayload: () => Number.POSITIVE_INFINITY,
    onReconnect: () => undefined,
    async close() {
      closed = true;
      for (const { timer } of unacked.values()) clearTimeout(timer);
      wakeAll();
    },
  };
}
