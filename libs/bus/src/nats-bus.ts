import type { Logger } from '@switchboard/logging';
import { BusErrorCode, type Subjects } from '@switchboard/protocol';
import { settlesWithin } from '@switchboard/runtime';
import {
  AckPolicy,
  ConsumerEvents,
  connect,
  DeliverPolicy,
  type JsMsg,
  type NatsConnection,
  NatsError,
  ErrorCode as NatsErrorCode,
  nanos,
  RetentionPolicy,
  StorageType,
  type SubscriptionOptions,
} from 'nats';
import { type Bus, BusError, type DurableMessage, ErrorAnswer, type InboundStreamSettings } from './bus.js';
import { createJetStreamPublisher, PublishError } from './jetstream-publisher.js';
import { encodeJson } from './json.js';

export interface NatsBusOptions {
  subjects: Subjects;
  logger: Logger;
  /**
   * Where replies to this process's requests (and its JetStream pulls and PubAcks) arrive:
   * `_INBOX.<service>` for each service, so that NATS permissions (deploy/nats/permissions.mjs)
   * let each user read its own replies and nobody else's. nats.js's default is `_INBOX`.
   */
  inboxPrefix?: string;
  /**
   * Called once if the connection closes for good other than through the bus's `close()`, with
   * the error it closed with, if any, or if the server refuses one of its subscriptions (a
   * permission missing; not its request and pull inboxes, which are made again). A closed
   * nats.js connection never reconnects, and a refused subscription is never made again: the
   * process would live on with `/healthz` 200 and nothing (or half of it) working, so the
   * services exit and let the orchestrator start them again. Unset, it is only logged.
   */
  onClosed?: (error: Error | undefined) => void;
}

export interface ConnectNatsBusOptions extends NatsBusOptions {
  servers: readonly string[];
  /** The connection name shown in NATS monitoring, e.g. `switchboard-gateway`. */
  name: string;
}

/**
 * A message of the inbound consumer as the services see it. `lost` tells whether the consumer
 * that delivered it has been found deleted: its messages are then no longer acked, nak'd, kept
 * alive or terminated (see `DurableConsumer`).
 */
export function toDurable(msg: JsMsg, lost: () => boolean = () => false): DurableMessage {
  return new InboundJsMsg(msg, lost);
}

/** One object per message, its methods on the prototype: persistence takes thousands a second. */
class InboundJsMsg implements DurableMessage {
  constructor(
    private readonly msg: JsMsg,
    private readonly lost: () => boolean,
  ) {}

  get data(): Uint8Array {
    return this.msg.data;
  }

  get seq(): number {
    return this.msg.seq;
  }

  get redelivered(): boolean {
    return this.msg.redelivered;
  }

  ack(): void {
    if (!this.lost()) this.msg.ack();
  }

  nak(): void {
    if (!this.lost()) this.msg.nak();
  }

  working(): void {
    if (!this.lost()) this.msg.working();
  }

  /**
   * A bare +TERM, never `+TERM <reason>`, which only NATS 2.10 and later understand (the reason
   * shows in their advisory). In a cluster the ack goes to the consumer's leader, which in a
   * rolling upgrade may be older than the server this process is connected to: it ignores the
   * long form, and the message came back after every ack wait, dead-lettered again each time up
   * to max_deliver. The reason is kept in the dead_letters row.
   */
  term(): void {
    if (!this.lost()) this.msg.term();
  }
}

/** JetStream's error codes for a consumer, or its stream, that does not exist. */
const CONSUMER_NOT_FOUND = 10_014;
const STREAM_NOT_FOUND = 10_059;

const isNotFound = (error: unknown) =>
  error instanceof NatsError && [CONSUMER_NOT_FOUND, STREAM_NOT_FOUND].includes(error.jsError()?.err_code ?? 0);

/**
 * A pull that starts after none has waited on the server for this long first checks that the
 * inbound consumer is still there: deleted then, it tells no pull, and created again at once (by
 * another replica), it would take the acks of the messages held from before.
 */
const RECHECK_IDLE_MS = 1_000;
/**
 * How often NATS tells a pull waiting on it that it is still there. A pull request can be lost: one
 * sent while the consumer's leader is being elected (a NATS server of the cluster restarting) is
 * taken by no server. Three intervals without word and the pull is sent again, where nats.js would
 * wait for two of its own intervals (half the pull's expiry each) and then a whole expiry more.
 */
const PULL_HEARTBEAT_MS = 1_000;
/** Intervals without a heartbeat before a pull is taken for lost. */
const HEARTBEATS_MISSED = 3;
/**
 * How long stopping a service waits for the requests it has taken to be answered. A persistence
 * replica stopping in a rolling update answers the replays and history reads it has started,
 * rather than leave their gateways to time out; its stop has 30 s in all.
 */
const SERVICE_STOP_WAIT_MS = 10_000;
/**
 * How long stopping a service waits for its subscriptions to drain. The drain ends with a flush
 * the server answers: through a NATS that passes nothing (a partition), it waited until the
 * client's pings found the connection dead, 20–30 s, and a gateway's stop outlasted its pod's
 * grace period. The connection's close ends the subscriptions anyway.
 */
const SERVICE_DRAIN_MS = 2_000;

/** What a pull waiting on a consumer gets when the consumer, or its stream, is deleted. */
const isDeleted = (error: unknown) => error instanceof NatsError && error.code === '409' && error.message === 'consumer deleted';

/**
 * Runs jobs together once this turn of the event loop's I/O is done. nats.js writes what was
 * published to its socket at the end of each microtask checkpoint, and every WebSocket frame a
 * gateway reads is a checkpoint of its own: started as they arrived, the JetStream publishes of a
 * busy gateway cost one write system call each, 30% of its CPU under load. Started together, the
 * publishes of one turn leave in one write.
 */
export function createTurnQueue(): (job: () => void) => void {
  let queued: (() => void)[] = [];
  const run = () => {
    const jobs = queued;
    queued = [];
    for (const job of jobs) job();
  };
  return (job) => {
    if (queued.length === 0) setImmediate(run);
    queued.push(job);
  };
}

function unavailable(what: string, error: unknown): BusError {
  const code = error instanceof NatsError ? error.code : undefined;
  const reason =
    error instanceof PublishError
      ? error.reason
      : code === NatsErrorCode.NoResponders
        ? 'no responders'
        : code === NatsErrorCode.Timeout
          ? 'timed out'
          : 'failed';
  return new BusError(BusErrorCode.Unavailable, `${what} ${reason}`, { cause: error });
}

/** How long one dial of a NATS server may take, its INFO and CONNECT included. */
const DIAL_TIMEOUT_MS = 5_000;
/** How long a pull a reconnect ended waits for the consumer's check before it is sent again. */
const RECHECK_AFTER_RECONNECT_MS = 2_000;
/** How long `close()` lets the connection drain before closing it. */
const CLOSE_DRAIN_MS = 3_000;

/**
 * JetStream did not answer: no server has it enabled yet, or it has no leader (a cluster starting
 * cold, a meta-leader election), or the request timed out. nats.js says 503 for the first two.
 */
function isJetStreamUnanswered(error: unknown): boolean {
  const code = error instanceof NatsError ? error.code : undefined;
  return code === NatsErrorCode.JetStreamNotEnabled || code === NatsErrorCode.Timeout;
}

/** The JetStream API's answer, or undefined for a stream or consumer that does not exist; any other failure is thrown. */
function orNotFound<T>(asking: Promise<T>): Promise<T | undefined> {
  return asking.catch((error: unknown) => {
    if (error instanceof NatsError && error.code === NatsErrorCode.JetStream404NoMessages) return undefined;
    throw error;
  });
}

type NatsCredentials = { user: string; pass: string } | { token: string } | Record<string, never>;

/**
 * A server URL without the credentials in its user info, as it may be logged and as nats.js can
 * parse it. Cut from the text rather than rebuilt with `URL`, which drops a port it thinks is the
 * default (`wss://host:443` would become `wss://host`, and nats.js would then use 4222).
 */
export function withoutCredentials(server: string): string {
  return server.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, '$1');
}

/**
 * The servers and credentials to connect with, from NATS_URL. The credentials come from the user
 * info of the first server URL that has one: `nats://user:password@host:4222` (user and password,
 * percent-decoded) or `nats://token@host:4222` (a token), and are passed as options. nats.js does
 * not read the user info itself: it refused every service of a NATS server with authorization
 * (deploy/nats/auth.conf), and it cannot even parse such a URL as a server. It takes
 * `nats://gateway:pw@nats:4222` for an IPv6 address and fails to start, and
 * `nats://gateway:4f9a@nats.svc:4222` for port 4 of `nats.svc`, so the servers go without it.
 */
export function natsConnectOptions(servers: readonly string[]): {
  servers: string[];
  user?: string;
  pass?: string;
  token?: string;
  tls?: Record<string, never>;
} {
  // nats.js drops the scheme and turns to TLS only when the server offers it: `tls://` alone would
  // send the credentials in the clear to a server (or anything in its place) that offers none.
  const tls = servers.some((server) => /^tls:\/\//i.test(server.trim()));
  return { servers: servers.map(withoutCredentials), ...natsCredentials(servers), ...(tls ? { tls: {} } : {}) };
}

function natsCredentials(servers: readonly string[]): NatsCredentials {
  for (const server of servers) {
    let url: URL;
    try {
      url = new URL(server);
    } catch {
      continue;
    }
    if (url.username === '') continue;
    const user = decodeURIComponent(url.username);
    return url.password === '' ? { token: user } : { user, pass: decodeURIComponent(url.password) };
  }
  return {};
}

/**
 * The bus over NATS: core publish/subscribe and request/reply, the NATS services framework for
 * endpoints (so `$SRV.PING/INFO/STATS` list every service), and JetStream for the inbound
 * stream. Reconnects forever: a NATS restart makes a service unready, never kills it. Should the
 * connection close for good all the same, `onClosed` is told.
 */
export async function connectNatsBus({ servers, name, ...options }: ConnectNatsBusOptions): Promise<Bus> {
  // The client waits for its first connection without end and says nothing meanwhile: say what it
  // waits for, or a NATS that is down looks like a start that hangs.
  const where = servers.map(withoutCredentials).join(', ');
  options.logger.info({ servers: where }, `waiting for NATS at ${where}`);
  const nc = await connect({
    ...natsConnectOptions(servers),
    name,
    ...(options.inboxPrefix === undefined ? {} : { inboxPrefix: options.inboxPrefix }),
    maxReconnectAttempts: -1,
    // By default nats.js closes the connection for good when a reconnect is refused twice in a
    // row with the same authorization error, whatever maxReconnectAttempts says: a restart of
    // NATS with credentials that reached it before they reached the services (or a permissions
    // file half rolled out) left every service alive, /healthz 200, never to connect again.
    ignoreAuthErrorAbort: true,
    reconnectTimeWait: 500,
    reconnectJitter: 250,
    // Each dial's bound (nats.js's default is 20 s). A flush pending while NATS cannot be reached
    // (a subscribe for a join, say) fails only when the next dial starts: into a host that drops
    // packets, a join waited 20 s for its answer, where the client's own deadline is 10 s.
    timeout: DIAL_TIMEOUT_MS,
    pingInterval: 10_000,
    waitOnFirstConnect: true,
    // Without this the client builds an Error (for its stack) on every request and publish:
    // about 5% of a gateway's CPU under load, for stacks nobody reads.
    noAsyncTraces: true,
  });
  return createNatsBus(nc, options);
}

/** The bus over a connection already made: `connectNatsBus`'s, or a test's own. */
export async function createNatsBus(nc: NatsConnection, { subjects, logger, inboxPrefix, onClosed }: NatsBusOptions): Promise<Bus> {
  const log = logger.child({ module: 'nats' });
  const js = nc.jetstream();
  const publisher = createJetStreamPublisher(nc, inboxPrefix);
  const publishInTurn = createTurnQueue();
  // Not checked here (nats.js asks for the account's JetStream info by default and throws without
  // an answer): a start while JetStream had no leader yet, a cluster starting cold, failed every
  // service, auth and the gateways too, which never manage streams. Persistence waits for an
  // answer where it needs one (`ensureInboundStream` throws `unavailable`).
  const jsm = await nc.jetstreamManager({ checkAPI: false });
  let connected = true;
  /** Set by close(): the connection's end is then expected, and nobody is told of it. */
  let closing = false;
  /** Set once a subscription was refused, and `onClosed` told of it. */
  let lostSubscription = false;
  /** Subscriptions the service can go without: refused, they are logged, not fatal. */
  const optionalSubjects = new Set<string>();
  const reconnectListeners = new Set<() => void>();
  /** The largest message the server takes, from its INFO: none known before the first. */
  let knownMaxPayload = nc.info?.max_payload ?? Number.POSITIVE_INFINITY;
  log.info({ server: nc.getServer() }, 'connected to NATS');

  void (async () => {
    for await (const status of nc.status()) {
      switch (status.type) {
        case 'disconnect':
          connected = false;
          log.warn({ server: status.data }, 'disconnected from NATS');
          break;
        case 'reconnect':
          connected = true;
          log.info({ server: status.data }, 'reconnected to NATS');
          // One listener that throws keeps neither the others from running nor this loop, which
          // keeps isConnected() (readiness) true to the connection, from going on.
          for (const listener of reconnectListeners)
            try {
              listener();
            } catch (error) {
              log.error({ err: error }, 'a reconnect listener threw');
            }
          break;
        case 'error': {
          log.error({ err: status.data }, 'NATS error');
          // nats.js closes a subscription the server refuses for good, and never subscribes it
          // again, not after the permission comes back either: the server refuses the SUB it sends
          // at every reconnect, and a permissions reload removes one in place. A refused PubAck
          // inbox timed out every send (stored all the same), refused endpoints stopped the whole
          // service, a refused session subject delivered nothing, with readiness 200 throughout.
          // Not the other inboxes: nats.js makes its request inbox again at the next request, and
          // a pull whose inbox is refused fails, and is pulled again (and logged).
          const refused = (status as { permissionContext?: { operation?: string; subject?: string } }).permissionContext;
          // nats.js's own rule for the prefix: `||`, so an empty one is `_INBOX` too.
          const ownInbox = refused?.subject?.startsWith(`${inboxPrefix || '_INBOX'}.`) && refused.subject !== publisher.subject;
          if (refused?.operation === 'subscription' && refused.subject !== undefined && optionalSubjects.has(refused.subject)) {
            log.warn(
              { subject: refused.subject },
              'NATS refused an optional subscription: its user lacks the permission (update the NATS permissions); going on without it',
            );
          } else if (refused?.operation === 'subscription' && !ownInbox && !closing && !lostSubscription) {
            lostSubscription = true;
            const error = new Error(`NATS refused the subscription to ${refused.subject}: its user lacks the permission`);
            log.error({ err: error }, 'NATS refused a subscription, which is never made again');
            onClosed?.(error);
          }
          break;
        }
        default:
          log.debug({ status: status.type, data: status.data }, 'NATS status');
      }
    }
  })();
  void nc.closed().then((error) => {
    connected = false;
    if (closing) return;
    log.error({ err: error }, 'the NATS connection closed for good');
    onClosed?.(error ?? undefined);
  });

  /** The inbound stream and its durable consumer, made or brought up to `settings`. */
  const setUpInboundStream = async (settings: InboundStreamSettings) => {
    // A work-queue stream: a message leaves it once persistence has acked it, because
    // PostgreSQL, not the stream, is the record.
    const stream = {
      name: subjects.inboundStream,
      subjects: [subjects.inboundAll],
      storage: StorageType.File,
      retention: RetentionPolicy.Workqueue,
      duplicate_window: nanos(settings.duplicateWindowMs),
      max_age: nanos(settings.maxAgeMs),
      num_replicas: settings.replicas,
    };
    const existing = await orNotFound(jsm.streams.info(subjects.inboundStream));
    if (existing && !existing.config.subjects?.includes(subjects.inboundAll)) {
      // Stream names keep letters, digits and `_` only, so prefixes differing in `-` against `_`
      // (`chat-a`, `chat_a`) name one stream: taking it over would carry one installation's
      // messages to the other's database.
      throw new Error(
        `the stream ${subjects.inboundStream} holds ${existing.config.subjects?.join(', ')}, another installation's subjects: ` +
          'choose a NATS_SUBJECT_PREFIX that differs from its prefix by more than "-" against "_"',
      );
    }
    if (existing) await jsm.streams.update(subjects.inboundStream, stream);
    else await jsm.streams.add(stream);
    const consumer = {
      durable_name: subjects.inboundConsumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(settings.ackWaitMs),
      max_deliver: settings.maxDeliver,
      max_ack_pending: settings.maxAckPending ?? 20_000,
      filter_subject: subjects.inboundAll,
    };
    if (await orNotFound(jsm.consumers.info(subjects.inboundStream, subjects.inboundConsumer))) {
      await jsm.consumers.update(subjects.inboundStream, subjects.inboundConsumer, consumer);
    } else await jsm.consumers.add(subjects.inboundStream, consumer);
  };

  /**
   * `respond` throws when the reply cannot be sent, for one over the server's max_payload. Thrown
   * inside a promise callback that would be an unhandled rejection, which stops the process: a
   * single oversized reply (a large page of history) took persistence down. The caller gets an
   * `internal` error answer instead, rather than waiting for its timeout.
   */
  const respondSafely = (msg: { respond(data: Uint8Array): boolean }, reply: Uint8Array, endpoint: string): boolean => {
    try {
      msg.respond(reply);
      return true;
    } catch (error) {
      log.error({ err: error, endpoint, bytes: reply.length }, 'reply could not be sent');
      try {
        msg.respond(encodeJson({ error: { code: BusErrorCode.Internal, message: 'the reply could not be sent' } }));
      } catch {
        // The connection is gone; the caller times out.
      }
      return false;
    }
  };

  const subscribeOrUnavailable = (subject: string, options: SubscriptionOptions) => {
    try {
      return nc.subscribe(subject, options);
    } catch (error) {
      throw unavailable(`subscribing to ${subject}`, error);
    }
  };

  return {
    kind: 'nats',
    publish: (subject, data) => nc.publish(subject, data),
    async subscribe(subject, handler, { optional = false } = {}) {
      if (optional) optionalSubjects.add(subject);
      // nats.js throws at once on a connection draining or closed (the process stopping): that
      // is `unavailable` as well, not an error of the caller's.
      const subscription = subscribeOrUnavailable(subject, {
        callback: (error, msg) => {
          if (error) return;
          // nats.js calls this from its read loop: an exception there would stop the connection
          // reading anything (PubAcks, replies, pulls) until the ping check found it stale.
          try {
            handler(msg.data);
          } catch (failure) {
            log.error({ err: failure, subject: msg.subject }, 'subscription handler threw');
          }
        },
      });
      // A round trip, after which the server knows of the subscription. A flush pending when the
      // connection drops is rejected (the client would subscribe again on reconnecting): the
      // caller gets `unavailable`, and nothing is left subscribed that it could not unsubscribe.
      try {
        await nc.flush();
      } catch (error) {
        subscription.unsubscribe();
        throw unavailable(`subscribing to ${subject}`, error);
      }
      return { unsubscribe: () => subscription.unsubscribe() };
    },
    async request(subject, data, timeoutMs) {
      try {
        return (await nc.request(subject, data, { timeout: timeoutMs })).data;
      } catch (error) {
        throw unavailable(`request on ${subject}`, error);
      }
    },
    async addService(spec) {
      /** Error answers per endpoint subject. */
      const errorAnswers = new Map<string, number>();
      /**
       * The service's figures for the $SRV.STATS request being answered. nats.js asks for them once
       * per endpoint, one after another, and they may cost a request of their own (persistence's
       * consumer info): one answer takes one reading, shared by its endpoints.
       */
      let reading: Promise<Record<string, unknown> | undefined> | undefined;
      const read = () => {
        if (!reading) {
          reading = Promise.resolve(spec.stats?.());
          // The endpoints of one answer read it within microtasks of each other; the next answer reads again.
          const done = () => setImmediate(() => (reading = undefined));
          reading.then(done, done);
        }
        return reading;
      };
      const service = await nc.services.add({
        name: spec.name,
        version: spec.version,
        description: spec.description,
        // nats.js counts an endpoint's errors only when its handler throws at once; these answer
        // asynchronously, so their error answers are counted here and reported beside the figures.
        statsHandler: async (endpoint) => ({ ...(await read()), errors: errorAnswers.get(endpoint.subject) ?? 0 }),
      });
      /** Requests taken and not answered yet: stopping waits for them, so that their replies go out. */
      const inFlight = new Set<Promise<void>>();
      for (const endpoint of spec.endpoints) {
        service.addEndpoint(endpoint.name, {
          subject: endpoint.subject,
          handler: (error, msg) => {
            if (error) {
              log.error({ err: error, endpoint: endpoint.name }, 'endpoint subscription failed');
              return;
            }
            const countError = () => errorAnswers.set(endpoint.subject, (errorAnswers.get(endpoint.subject) ?? 0) + 1);
            const handling = endpoint.handler(msg.data).then(
              (reply) => {
                // An error answer, or a reply NATS refused (answered `internal` instead), is an error.
                const sent = respondSafely(msg, reply instanceof ErrorAnswer ? reply.data : reply, endpoint.name);
                if (reply instanceof ErrorAnswer || !sent) countError();
              },
              (failure: unknown) => {
                countError();
                log.error({ err: failure, endpoint: endpoint.name }, 'endpoint handler threw');
              },
            );
            inFlight.add(handling);
            void handling.finally(() => inFlight.delete(handling));
          },
        });
      }
      // Once the server has the endpoints' subscriptions: until then a request got "no
      // responders", though the service, and the replica's readiness, said it was there. A flush
      // the connection's drop fails leaves no service behind (nats.js would subscribe its
      // endpoints again on reconnecting, to answer for a caller that was told it failed).
      try {
        await nc.flush();
      } catch (error) {
        await settlesWithin(service.stop(), SERVICE_DRAIN_MS);
        throw unavailable(`adding the service ${spec.name}`, error);
      }
      return {
        // The service's subscriptions drain first (within SERVICE_DRAIN_MS: should NATS not answer
        // by then, a request it routed before the unsubscribe can still arrive), then the requests
        // taken are answered, within SERVICE_STOP_WAIT_MS: the connection closes after this.
        stop: async () => {
          await settlesWithin(service.stop(), SERVICE_DRAIN_MS);
          if (inFlight.size > 0) await settlesWithin(Promise.allSettled(inFlight), SERVICE_STOP_WAIT_MS);
        },
      };
    },
    async ensureInboundStream(settings: InboundStreamSettings) {
      try {
        await setUpInboundStream(settings);
      } catch (error) {
        throw isJetStreamUnanswered(error) ? unavailable('setting up the inbound stream', error) : error;
      }
    },
    async publishDurable(subject, data, msgId, timeoutMs) {
      try {
        const ack = await new Promise<{ duplicate: boolean; seq: number }>((resolve, reject) => {
          publishInTurn(() => publisher.publish(subject, data, msgId, timeoutMs).then(resolve, reject));
        });
        return { duplicate: ack.duplicate, seq: ack.seq };
      } catch (error) {
        throw unavailable(`publishing to ${subject}`, error);
      }
    },
    async inboundConsumer() {
      const consumer = await js.consumers.get(subjects.inboundStream, subjects.inboundConsumer).catch((error: unknown) => {
        throw unavailable('getting the inbound consumer', error);
      });
      const { created } = await consumer.info(true);
      // Messages of a lost consumer are not settled: a consumer created again under the same name
      // would take their acks, and some NATS server versions move a consumer's delivery pointer
      // past a sequence acked ahead of it, skipping messages it has not delivered yet (current
      // servers no longer do). Unsettled, they are delivered again by the new consumer, and
      // persistence finds those it stored.
      let lost: BusError | undefined;
      const isLost = () => lost !== undefined;
      const lose = (reason: string, error?: unknown) => {
        lost ??= new BusError(BusErrorCode.Unavailable, `the inbound consumer is gone (${reason})`, { cause: error });
        log.error({ err: error, reason }, 'the inbound consumer is gone');
        throw lost;
      };
      /**
       * Whether the consumer is still the one this object pulls from: not deleted, and not
       * created again since under the same name (its creation time tells). An answer NATS does
       * not give (a timeout, say) leaves it so.
       */
      const check = async () => {
        const now = await consumer.info().then(
          (info) => info.created,
          (error: unknown) => (isNotFound(error) ? undefined : created),
        );
        if (now !== created) lose(now === undefined ? 'not found' : 'created again');
      };
      /** When the last pull ended: while none waits on the server, a deletion tells nobody. */
      let idleSince = performance.now();
      /** Pulls failed in a row: while JetStream cannot take them, one a second, of which few are logged. */
      let failedInARow = 0;
      return {
        fetch({ maxMessages, expiresMs }) {
          let pull: Awaited<ReturnType<typeof consumer.fetch>> | undefined;
          let closed = false;
          return {
            async *[Symbol.asyncIterator]() {
              if (lost) throw lost;
              if (performance.now() - idleSince > RECHECK_IDLE_MS) await check();
              let taken = 0;
              /** What the last pull sent took: one that took nothing may have gone to a consumer deleted meanwhile. */
              let lastTook = 0;
              let failure: unknown;
              // A pull waits on the server it was sent to. After a reconnect (to another server of
              // a cluster, or to a restarted one) nats.js asks for it again only once the consumer
              // answers an info request, and while its leader is being elected it waits a whole
              // pull expiry before asking again: nothing was stored for 30 s. Such a pull, and one
              // whose heartbeats stop, is ended: sent again at once if it took messages, and
              // otherwise once the check below has told a consumer gone from one being elected
              // (NATS answers a pull for a missing consumer with silence). A message the consumer
              // sends to a pull the reconnect ends, in the moment between nats.js subscribing its
              // inbox again and this unsubscribing it, waits for the ack wait.
              let lostPull = false;
              /** The pull was ended by a reconnect: the consumer may have been made again meanwhile. */
              let reconnected = false;
              const pullAgain = (which = pull) => {
                // An old pull's late news ends that pull only, not the one sent since.
                if (which === pull) lostPull = true;
                void which?.close();
              };
              const onReconnect = () => {
                reconnected = true;
                pullAgain();
              };
              reconnectListeners.add(onReconnect);
              try {
                while (!closed && taken < maxMessages) {
                  // A check that answered late, after the bound above, may have found it gone.
                  if (lost) throw lost;
                  lostPull = false;
                  reconnected = false;
                  const before = taken;
                  const current = await consumer.fetch({
                    max_messages: maxMessages - taken,
                    expires: expiresMs,
                    idle_heartbeat: Math.min(PULL_HEARTBEAT_MS, expiresMs / 2),
                  });
                  pull = current;
                  void current.status().then(async (events) => {
                    for await (const event of events) {
                      // Counted at each interval without word. Not at the second: after an event
                      // loop stall the timer runs before the heartbeats waiting in the socket are read.
                      if (event.type === ConsumerEvents.HeartbeatsMissed && Number(event.data) >= HEARTBEATS_MISSED)
                        return pullAgain(current);
                    }
                  });
                  for await (const msg of current) {
                    taken++;
                    yield toDurable(msg, isLost);
                  }
                  lastTook = taken - before;
                  if (!lostPull || lastTook === 0) break;
                  // Sent again at once, since it took messages; but after a reconnect the consumer
                  // may have been deleted and made again while the connection was away (the 409
                  // that says so never arrived), and a pull sent to the new one took its messages
                  // as the old one's: it must still be the consumer this pulls from. Asked for a
                  // short while only (check throws if it is gone; no answer leaves it so).
                  // Again if the connection came back once more meanwhile.
                  while (reconnected && !closed) {
                    reconnected = false;
                    await settlesWithin(check(), RECHECK_AFTER_RECONNECT_MS);
                    if (lost) throw lost;
                  }
                }
              } catch (error) {
                // Found gone: the caller is told at once, not after one more check.
                if (error === lost) throw error;
                // Deleted under a waiting pull (409). Not found when nats.js checked after missed
                // heartbeats, no responders and the rest are told apart by the check below.
                if (isDeleted(error)) lose('deleted', error);
                failure = error;
              } finally {
                reconnectListeners.delete(onReconnect);
                idleSince = performance.now();
              }
              // A pull to a consumer deleted while none waited may also end with nothing, and no error.
              if ((failure !== undefined || lastTook === 0) && !closed) await check();
              if (failure === undefined) failedInARow = 0;
              else if (failedInARow++ % 60 === 0)
                log.warn({ err: failure, failedInARow }, 'a pull from the inbound consumer failed; pulling again');
            },
            close: async () => {
              closed = true;
              await pull?.close();
            },
          };
        },
      };
    },
    async inboundStats() {
      const info = await jsm.consumers.info(subjects.inboundStream, subjects.inboundConsumer);
      return { pending: info.num_pending, ackPending: info.num_ack_pending };
    },
    isConnected: () => connected && !nc.isClosed() && !nc.isDraining(),
    maxPayload: () => {
      // nats.js forgets the server's INFO at each dial while it reconnects, and the last one known
      // stands meanwhile: read as no limit, a message too large was let through, to be refused
      // by the server once connected (which closes the connection) or stored with an event too
      // large to publish (item 81).
      knownMaxPayload = nc.info?.max_payload ?? knownMaxPayload;
      return knownMaxPayload;
    },
    onReconnect: (listener) => {
      reconnectListeners.add(listener);
    },
    async close() {
      closing = true;
      // Draining sends what is buffered and unsubscribes; close fails what is still waiting.
      // It ends with a flush answered by the server, which nats.js fails only at its next dial,
      // or never while a partition is not found out: unbounded, the drain outlasted a stop's
      // 30 s. And a drain whose flush failed leaves the connection open.
      if (!nc.isClosed() && !nc.isDraining()) await settlesWithin(nc.drain(), CLOSE_DRAIN_MS);
      if (!nc.isClosed()) await nc.close();
      publisher.close();
    },
  };
}
