import type { Logger } from '@switchboard/logging';
import { connect, type NatsConnection } from 'nats';

export interface NatsClient {
  readonly nc: NatsConnection;
  /** True while the connection is up (not reconnecting, not closed). */
  isConnected(): boolean;
  /** Drains subscriptions and closes; idempotent. */
  drain(): Promise<void>;
  /** Called after each reconnection, e.g. to catch up on what was missed while disconnected. */
  onReconnect(listener: () => void): void;
  /** Reconnections so far. */
  reconnects(): number;
}

export interface ConnectNatsOptions {
  servers: readonly string[];
  /** The connection name shown in NATS monitoring, e.g. `switchboard-gateway`. */
  name: string;
  logger: Logger;
}

/**
 * Connects with reconnection that never gives up: a restart of NATS must never take a service down
 * (contract §3), only make it unready until NATS is back.
 */
export async function connectNats({ servers, name, logger }: ConnectNatsOptions): Promise<NatsClient> {
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
  let connected = true;
  let reconnectCount = 0;
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
          reconnectCount++;
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
    nc,
    isConnected: () => connected && !nc.isClosed() && !nc.isDraining(),
    onReconnect: (listener) => {
      reconnectListeners.push(listener);
    },
    reconnects: () => reconnectCount,
    async drain() {
      if (nc.isClosed() || nc.isDraining()) return;
      await nc.drain();
    },
  };
}
