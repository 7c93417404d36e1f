import type { BusErrorCode } from '@switchboard/protocol';

/**
 * The one narrow interface between the services and their message transport. In production it
 * is NATS with JetStream (`connectNatsBus`); in the all-in-one process it is an in-process bus
 * (`createMemoryBus`). Services never see which.
 */

export interface BusSubscription {
  unsubscribe(): void;
}

/**
 * An answer that reports a failure (`{ "error": … }` in the reply): sent as any reply, and counted
 * as an error of its endpoint in `$SRV.STATS` (`data.errors`).
 */
export class ErrorAnswer {
  constructor(readonly data: Uint8Array) {}
}

export interface EndpointSpec {
  /** Endpoint name in the services framework, e.g. `sessions-get`. */
  name: string;
  subject: string;
  /** Answers one request; throwing is a bug (answer with an `ErrorAnswer` instead). */
  handler: (data: Uint8Array) => Promise<Uint8Array | ErrorAnswer>;
}

export interface ServiceSpec {
  /** Service name in the services framework, e.g. `switchboard-persistence`. */
  name: string;
  version: string;
  description: string;
  endpoints: EndpointSpec[];
  /** Extra figures reported in `$SRV.STATS` (each endpoint's `data`, beside its `errors`). */
  stats?: () => Promise<Record<string, number>>;
}

export interface RegisteredService {
  stop(): Promise<void>;
}

/** A message taken from the inbound stream; it stays pending until acked, nak'd or terminated. */
export interface DurableMessage {
  readonly data: Uint8Array;
  /** Stream sequence: the same for every delivery of one message. */
  readonly seq: number;
  readonly redelivered: boolean;
  ack(): void;
  /** Hands the message back for redelivery now. */
  nak(): void;
  /** Extends the ack deadline. */
  working(): void;
  /** Gives up on the message for good. No reason goes with it: the caller records its own. */
  term(): void;
}

/**
 * The inbound stream's durable consumer, from which a replica pulls. Should the consumer or its
 * stream be deleted (or deleted and created again under the same name), a pull yields what had
 * already arrived and then throws a `BusError` `unavailable`; from then on this consumer's
 * messages are no longer settled (ack, nak, working and term do nothing), and a consumer created
 * again delivers them anew. Nothing recreates the consumer by itself: see `ensureInboundStream`.
 */
export interface DurableConsumer {
  /**
   * Asks for at most `maxMessages` and yields each as it arrives. The iteration ends once they
   * have all come, after `expiresMs` (at least 1 s) if they have not, or when the pull is closed.
   * A message is kept alive only by whoever holds it: nothing waits unread in the client beyond
   * what the caller asked for, as long as it reads as fast as they come.
   */
  fetch(options: { maxMessages: number; expiresMs: number }): DurablePull;
}

/** One pull from the inbound consumer (see `DurableConsumer.fetch`). */
export interface DurablePull extends AsyncIterable<DurableMessage> {
  /**
   * Ends the iteration. What the server sends to the pull after it is redelivered after the ack
   * wait. Over NATS it resolves once the iteration has come to its end: awaited from inside the
   * iteration (in a `for await` over this pull), it waits for ever.
   */
  close(): Promise<void>;
}

export interface InboundStreamSettings {
  ackWaitMs: number;
  maxDeliver: number;
  duplicateWindowMs: number;
  maxAgeMs: number;
  replicas: number;
  maxAckPending?: number;
}

export interface Bus {
  readonly kind: 'nats' | 'memory';
  /** Fire-and-forget publish. Throws at once on a closed bus (and, over NATS, for a payload over the server's limit). */
  publish(subject: string, data: Uint8Array): void;
  /**
   * Resolves once the subscription is registered, so nothing published afterwards is missed.
   * A subscription NATS refuses for want of a permission ends the connection (`onClosed`): the
   * service cannot work without it. One marked `optional` is only logged, and the service goes on
   * without it (a feature whose permission a NATS configuration from before it lacks).
   * @throws BusError `unavailable` when the connection drops first (nothing stays subscribed).
   */
  subscribe(subject: string, handler: (data: Uint8Array) => void, options?: { optional?: boolean }): Promise<BusSubscription>;
  /** @throws BusError `unavailable` when nobody answers in time. */
  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  /** Registers request handlers; replicas of a service share the load. */
  addService(spec: ServiceSpec): Promise<RegisteredService>;
  /**
   * Creates or updates the inbound stream and its durable consumer.
   * @throws BusError `unavailable` when JetStream does not answer (no leader yet, not enabled).
   */
  ensureInboundStream(settings: InboundStreamSettings): Promise<void>;
  /**
   * Appends to the inbound stream; a second publish with the same `msgId` within the duplicate
   * window is not stored again and reports `duplicate`. `seq` is the message's sequence in the
   * stream: the first publish's, for a duplicate.
   * @throws BusError `unavailable` when the stream does not acknowledge it.
   */
  publishDurable(subject: string, data: Uint8Array, msgId: string, timeoutMs: number): Promise<{ duplicate: boolean; seq: number }>;
  /**
   * The inbound stream's shared durable consumer, to pull from.
   * @throws BusError `unavailable` when it or its stream does not exist, or NATS does not answer.
   */
  inboundConsumer(): Promise<DurableConsumer>;
  /** Messages not yet delivered, and delivered but not yet acked. */
  inboundStats(): Promise<{ pending: number; ackPending: number }>;
  isConnected(): boolean;
  /**
   * The most bytes the broker takes in one message, headers included: the NATS server's
   * `max_payload` (read again on each reconnection), unbounded in memory.
   */
  maxPayload(): number;
  /** Called after each reconnection, to catch up on what was missed meanwhile. */
  onReconnect(listener: () => void): void;
  /** Finishes what is in flight and disconnects. */
  close(): Promise<void>;
}

/** A failed bus call, with the bus error code of the answer (or `unavailable` when nobody answered). */
export class BusError extends Error {
  override name = 'BusError';
  /** For `rate_limited`: how long until the same request can succeed. */
  readonly retryAfterMs: number | undefined;

  constructor(
    readonly code: BusErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(message, options);
    this.retryAfterMs = options?.retryAfterMs;
  }
}
