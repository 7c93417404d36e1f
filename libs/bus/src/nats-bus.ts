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

export interface ConnectNatsBusOptions {
  servers: readonly string[];
  /** The connection name shown in NATS monitoring, e.g. `switchboard-gateway`. */
  name: string;
  subjects: Subjects;
  logger: Logger;
}

const toDurable = (msg: JsMsg): DurableMessage => ({
  data: msg.data,
  seq: msg.seq,
  redelivered: msg.redelivered,
  ack: () => msg.ack(),
  nak: () => msg.nak(),
  working: () => msg.working(),
  term: (reason) => msg.term(reason),
});

function unavailable(what: string, error: unknown): BusError {
  const code = error instanceof NatsError ? error.code : undefined;
  const reason = code === NatsErrorCode.NoResponders ? 'no responders' : code === NatsErrorCode.Timeout ? 'timed out' : 'failed';
  return new BusError(BusErrorCode.Unavailable, `${what} ${reason}`, { cause: error });
}

/**
 * The bus over NATS: core publish/subscribe and request/reply, the NATS services framework for
 * endpoints (so `$SRV.PING/INFO/STATS` list every service), and JetStream for the inbound
 * stream. Reconnects forever: a NATS restart makes a service unready, never kills it.
 */
export async function connectNatsBus({ servers, name, subjects, logger }: ConnectNatsBusOptions): Promise<Bus> {
  const log = logger.child({ module: 'nats' });
  const nc = await connect({
    servers: [...servers],
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    reconnectJitter: 250,
    pingInterval: 10_000,
    waitOnFirstConnect: true,
  });
  const js = nc.jetstream();
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

  return {
    kind: 'nats',
    publish: (subject, data) => nc.publish(subject, data),
    async subscribe(subject, handler) {
      const subscription = nc.subscribe(subject, {
        callback: (error, msg) => {
          if (!error) handler(msg.data);
        },
      });
      // A round trip, after which the server knows of the subscription.
      await nc.flush();
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
              (reply) => msg.respond(reply),
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
        const ack = await js.publish(subject, data, { msgID: msgId, timeout: timeoutMs });
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
          for await (const msg of messages) yield toDurable(msg);
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
      if (!nc.isClosed() && !nc.isDraining()) await nc.drain();
    },
  };
}
