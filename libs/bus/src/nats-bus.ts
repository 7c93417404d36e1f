import type { Logger } from '@switchboard/logging';
import { BusErrorCode, type Subjects } from '@switchboard/protocol';
import {
  AckPolicy,
  connect,
  DeliverPolicy,
  type JsMsg,
  NatsError,
  ErrorCode as NatsErrorCode,
  nanos,
  RetentionPolicy,
  StorageType,
} from 'nats';
import { type Bus, BusError, type DurableConsumer, type DurableMessage, type InboundStreamSettings } from './bus.js';
import { createJetStreamPublisher, PublishError } from './jetstream-publisher.js';
import { encodeJson } from './json.js';

export interface ConnectNatsBusOptions {
  servers: readonly string[];
  /** The connection name shown in NATS monitoring, e.g. `switchboard-gateway`. */
  name: string;
  subjects: Subjects;
  logger: Logger;
  /**
   * Where replies to this process's requests (and its JetStream pulls and PubAcks) arrive:
   * `_INBOX.<service>` for each service, so that NATS permissions (deploy/nats/permissions.mjs)
   * let each user read its own replies and nobody else's. nats.js's default is `_INBOX`.
   */
  inboxPrefix?: string;
}

/**
 * Whether the server understands `+TERM <reason>`: NATS 2.10 and later. An older server (2.9)
 * takes only a bare `+TERM` and silently ignores the longer form, so a message terminated with a
 * reason came back after every ack wait and was dead-lettered again, up to max_deliver times.
 */
export function termTakesReason(serverVersion: string | undefined): boolean {
  const [major = 0, minor = 0] = (serverVersion ?? '').split('.').map((part) => Number.parseInt(part, 10) || 0);
  return major > 2 || (major === 2 && minor >= 10);
}

const toDurable = (msg: JsMsg, serverVersion: () => string | undefined): DurableMessage => ({
  data: msg.data,
  seq: msg.seq,
  redelivered: msg.redelivered,
  ack: () => msg.ack(),
  nak: () => msg.nak(),
  working: () => msg.working(),
  // The reason only shows in the server's advisory; the dead letter keeps it anyway.
  term: (reason) => (termTakesReason(serverVersion()) ? msg.term(reason) : msg.term()),
});

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
export function natsConnectOptions(servers: readonly string[]): { servers: string[]; user?: string; pass?: string; token?: string } {
  return { servers: servers.map(withoutCredentials), ...natsCredentials(servers) };
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
 * stream. Reconnects forever: a NATS restart makes a service unready, never kills it.
 */
export async function connectNatsBus({ servers, name, subjects, logger, inboxPrefix }: ConnectNatsBusOptions): Promise<Bus> {
  const log = logger.child({ module: 'nats' });
  const nc = await connect({
    ...natsConnectOptions(servers),
    name,
    ...(inboxPrefix === undefined ? {} : { inboxPrefix }),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    reconnectJitter: 250,
    pingInterval: 10_000,
    waitOnFirstConnect: true,
    // Without this the client builds an Error (for its stack) on every request and publish:
    // about 5% of a gateway's CPU under load, for stacks nobody reads.
    noAsyncTraces: true,
  });
  const js = nc.jetstream();
  const publisher = createJetStreamPublisher(nc, inboxPrefix);
  const publishInTurn = createTurnQueue();
  const jsm = await nc.jetstreamManager();
  let connected = true;
  const reconnectListeners: (() => void)[] = [];
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
          for (const listener of reconnectListeners) listener();
          break;
        case 'error':
          log.error({ err: status.data }, 'NATS error');
          break;
        default:
          log.debug({ status: status.type, data: status.data }, 'NATS status');
      }
    }
  })();
  void nc.closed().then((error) => {
    connected = false;
    if (error) log.error({ err: error }, 'NATS connection closed with an error');
  });

  /**
   * `respond` throws when the reply cannot be sent, for one over the server's max_payload. Thrown
   * inside a promise callback that would be an unhandled rejection, which stops the process: a
   * single oversized reply (a large page of history) took persistence down. The caller gets an
   * `internal` error answer instead, rather than waiting for its timeout.
   */
  const respondSafely = (msg: { respond(data: Uint8Array): boolean }, reply: Uint8Array, endpoint: string) => {
    try {
      msg.respond(reply);
    } catch (error) {
      log.error({ err: error, endpoint, bytes: reply.length }, 'reply could not be sent');
      try {
        msg.respond(encodeJson({ error: { code: BusErrorCode.Internal, message: 'the reply could not be sent' } }));
      } catch {
        // The connection is gone; the caller times out.
      }
    }
  };

  return {
    kind: 'nats',
    publish: (subject, data) => nc.publish(subject, data),
    async subscribe(subject, handler) {
      const subscription = nc.subscribe(subject, {
        callback: (error, msg) => {
          if (!error) handler(msg.data);
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
      const service = await nc.services.add({
        name: spec.name,
        version: spec.version,
        description: spec.description,
        ...(spec.stats ? { statsHandler: async () => spec.stats?.() } : {}),
      });
      for (const endpoint of spec.endpoints) {
        service.addEndpoint(endpoint.name, {
          subject: endpoint.subject,
          handler: (error, msg) => {
            if (error) {
              log.error({ err: error, endpoint: endpoint.name }, 'endpoint subscription failed');
              return;
            }
            endpoint.handler(msg.data).then(
              (reply) => respondSafely(msg, reply, endpoint.name),
              (failure: unknown) => log.error({ err: failure, endpoint: endpoint.name }, 'endpoint handler threw'),
            );
          },
        });
      }
      return { stop: () => service.stop().then(() => undefined) };
    },
    async ensureInboundStream(settings: InboundStreamSettings) {
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
      if (await jsm.streams.info(subjects.inboundStream).catch(() => undefined)) await jsm.streams.update(subjects.inboundStream, stream);
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
      if (await jsm.consumers.info(subjects.inboundStream, subjects.inboundConsumer).catch(() => undefined)) {
        await jsm.consumers.update(subjects.inboundStream, subjects.inboundConsumer, consumer);
      } else await jsm.consumers.add(subjects.inboundStream, consumer);
    },
    async publishDurable(subject, data, msgId, timeoutMs) {
      try {
        const ack = await new Promise<{ duplicate: boolean }>((resolve, reject) => {
          publishInTurn(() => publisher.publish(subject, data, msgId, timeoutMs).then(resolve, reject));
        });
        return { duplicate: ack.duplicate };
      } catch (error) {
        throw unavailable(`publishing to ${subject}`, error);
      }
    },
    async consumeInbound({ maxMessages }) {
      const consumer = await js.consumers.get(subjects.inboundStream, subjects.inboundConsumer);
      const messages = await consumer.consume({ max_messages: maxMessages });
      const durable: DurableConsumer = {
        async *[Symbol.asyncIterator]() {
          for await (const msg of messages) yield toDurable(msg, () => nc.info?.version);
        },
        close: async () => {
          await messages.close();
        },
      };
      return durable;
    },
    async inboundStats() {
      const info = await jsm.consumers.info(subjects.inboundStream, subjects.inboundConsumer);
      return { pending: info.num_pending, ackPending: info.num_ack_pending };
    },
    isConnected: () => connected && !nc.isClosed() && !nc.isDraining(),
    onReconnect: (listener) => {
      reconnectListeners.push(listener);
    },
    async close() {
      // Draining lets PubAcks already on their way settle their publishes; close fails the rest.
      if (!nc.isClosed() && !nc.isDraining()) await nc.drain();
      publisher.close();
    },
  };
}
