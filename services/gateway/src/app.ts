import { once } from 'node:events';
import { type Bus, createPersistenceClient, Deadlines, decodeJson, encodeJson } from '@switchboard/bus';
import type { Logger } from '@switchboard/logging';
import { createSubjects, tokenRevocationSchema } from '@switchboard/protocol';
import {
  counterTotal,
  createMetricsRegistry,
  type StartingProbes,
  type Stoppable,
  startInParts,
  startOpsServer,
} from '@switchboard/runtime';
import { createTokenVerifier, requestKeySource } from '@switchboard/tokens';
import { createSessionAccess } from './broker/session-access.js';
import { createSessionHub, HEADS_CHECK_INTERVAL_MS } from './broker/session-hub.js';
import type { GatewayConfig } from './config.js';
import { createStaticSite } from './http/static-files.js';
import { createGatewayMetrics } from './metrics.js';
import { TokenRevocations } from './token-revocations.js';
import { CLOSE_SEND_WAIT_MS, ClientConnection } from './ws/connection.js';
import { RollingSweep } from './ws/rolling-sweep.js';
import { createWsServer } from './ws/server.js';
import { UserConnections } from './ws/user-connections.js';

export interface GatewayOptions {
  config: GatewayConfig;
  logger: Logger;
  /** The message bus, created (and closed) by the caller. */
  bus: Bus;
  /** The probes the caller answered while it connected (`serveStartingProbes`); the ops server takes their port. */
  startingProbes?: StartingProbes;
}

export interface Gateway extends Stoppable {
  readonly port: number;
  readonly opsPort: number;
}

export const GATEWAY_VERSION = '0.1.0';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts a gateway: the WebSocket server, its link to NATS, and the ops endpoints. */
export async function startGateway({ config, logger, bus, startingProbes }: GatewayOptions): Promise<Gateway> {
  const subjects = createSubjects(config.subjectPrefix);
  const registry = createMetricsRegistry('gateway');
  const metrics = createGatewayMetrics(registry);
  let draining = false;

  const persistence = createPersistenceClient(bus, subjects);
  const verifier = createTokenVerifier({
    keySource: requestKeySource((subject, data, timeoutMs) => bus.request(subject, data, timeoutMs), subjects.authJwks),
    issuer: config.issuer,
    audience: config.audience,
  });
  return startInParts(async (running) => {
    const hub = createSessionHub({
      bus,
      subjects,
      persistence,
      logger,
      metrics,
      gapWaitMs: config.gapWaitMs,
      headsCheckIntervalMs: HEADS_CHECK_INTERVAL_MS,
    });
    running({ stop: async () => hub.close() });
    await hub.ready;
    const access = createSessionAccess(persistence);
    bus.onReconnect(() => {
      metrics.natsReconnects.inc();
      hub.resync();
    });

    const connections = new Set<ClientConnection>();
    // WebSocket pings, spread over the interval: a socket that has not answered for two intervals is
    // dropped; slow readers are checked too.
    const heartbeat = new RollingSweep<ClientConnection>(config.heartbeatIntervalMs, (connection, now) => {
      if (now - connection.lastPongAt > config.heartbeatIntervalMs * 2) connection.terminate();
      else {
        connection.ping();
        connection.checkBackpressure(now);
      }
    });
    const expiries = new Deadlines<ClientConnection>((connection) => void connection.expire(CLOSE_SEND_WAIT_MS));
    // Sockets past MAX_CONNECTION_AGE_S are closed as for a restart: the client reconnects through
    // the load balancer, so gateways added since (a scale-up) get their share of the old sockets.
    const aged =
      config.maxConnectionAgeMs > 0
        ? new Deadlines<ClientConnection>(
            (connection) => void connection.closeForRestart(CLOSE_SEND_WAIT_MS, 'connection age reached; reconnect'),
            1_000,
            // A timeout: a wall clock stepped forward must not close every socket at once.
            () => performance.now(),
          )
        : undefined;
    const userConnections = new UserConnections(config.maxConnectionsPerUser);
    const revocations = new TokenRevocations();
    // Before the first socket: a revoked token is refused from the first auth frame on.
    const revocationSubscription = await bus.subscribe(
      subjects.authRevocations,
      (data) => {
        const parsed = tokenRevocationSchema.safeParse(decodeJson(data));
        if (!parsed.success) {
          logger.warn({ subject: subjects.authRevocations }, 'ignored a token revocation that does not decode');
          return;
        }
        const { user_id: userId, token_version: validFrom } = parsed.data;
        revocations.add(userId, validFrom);
        for (const connection of connections) void connection.revokeIfUsing(userId, validFrom, CLOSE_SEND_WAIT_MS);
        logger.info({ userId, validFrom }, "the user's tokens below this version are revoked");
      },
      // Optional: with the NATS permissions of a release before it, the gateway goes on without
      // (revoked tokens then stay valid until they expire), rather than stop at every start.
      { optional: true },
    );
    running({ stop: async () => revocationSubscription.unsubscribe() });
    const deps = { config, logger, metrics, verifier, persistence, access, hub, expiries, userConnections, revocations };
    const server = createWsServer({
      maxFrameBytes: config.maxFrameBytes,
      allowedOrigins: config.allowedOrigins,
      logger,
      isAccepting: () => !draining,
      onHttpRequest: createStaticSite({
        // The page keeps at most this many conversations joined on its one socket.
        publicConfig: {
          authUrl: config.publicAuthUrl ?? null,
          authPort: config.publicAuthPort,
          maxSessionsPerConnection: config.maxSessionsPerConnection,
          maxContentChars: config.maxContentChars,
          // The SDK refuses a larger frame itself (its default is the gateway's default).
          maxFrameBytes: config.maxFrameBytes,
          // And paces its frames under this rate (its default is the gateway's default).
          rateLimitPerSec: config.rateLimitPerSec,
        },
      }),
      onConnection: (ws, _request, socket) => {
        const connection = new ClientConnection(ws, socket, deps);
        connections.add(connection);
        heartbeat.add(connection);
        // A tenth either way, at random: the sockets of one reconnect wave do not all come back at once.
        aged?.set(connection, performance.now() + config.maxConnectionAgeMs * (0.9 + 0.2 * Math.random()));
        ws.once('close', () => {
          connections.delete(connection);
          heartbeat.delete(connection);
          aged?.delete(connection);
        });
      },
    });

    running({
      stop: async () => {
        heartbeat.close();
        expiries.close();
        aged?.close();
        server.close();
      },
    });

    // The gateway in the NATS services framework, so `$SRV.STATS` (and `npm run status`) show
    // every gateway's connections and traffic over NATS alone.
    const status = async () => ({
      connections: connections.size,
      authenticated: [...connections].filter((connection) => connection.isAuthenticated).length,
      sessions: hub.sessionCount(),
      messages_received: await counterTotal(metrics.framesIn, { type: 'send_message' }),
      messages_delivered: await counterTotal(metrics.framesOut, { type: 'new_message' }),
    });
    server.listen(config.port, config.host);
    await once(server, 'listening');
    const busService = running(
      await bus.addService({
        name: subjects.gatewayServiceName,
        version: GATEWAY_VERSION,
        description: 'Switchboard gateway: client WebSockets',
        endpoints: [{ name: 'status', subject: subjects.gatewayStatus, handler: async () => encodeJson(await status()) }],
        stats: status,
      }),
    );
    const ops = await startOpsServer({
      port: config.opsPort,
      host: config.host,
      registry,
      logger,
      replacing: startingProbes,
      checks: { bus: bus.isConnected, accepting: () => !draining },
    });
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    logger.info({ port, opsPort: ops.port }, 'gateway listening');

    return {
      port,
      opsPort: ops.port,
      async stop() {
        // Readiness fails at once and new upgrades are refused; open sockets are told to reconnect
        // elsewhere (1012), spread over DRAIN_SECONDS so they do not all land on the others at once.
        draining = true;
        aged?.close();
        const open = [...connections];
        const spreadMs = (config.drainSeconds * 1000) / Math.max(1, open.length);
        const start = performance.now();
        const closing: Promise<void>[] = [];
        for (const [index, connection] of open.entries()) {
          // Each close has its time, the first one step in, so load balancers see the failed
          // readiness first. Timed from the start, not by a sleep per socket: those overshoot, and
          // with tens of thousands of sockets the drain would outlast the shutdown's time limit.
          const wait = start + (index + 1) * spreadMs - performance.now();
          if (wait >= 1) await sleep(wait);
          closing.push(connection.closeForRestart(CLOSE_SEND_WAIT_MS));
        }
        await Promise.all(closing);
        heartbeat.close();
        expiries.close();
        server.close();
        // Sockets that did not finish the close handshake.
        await sleep(Math.min(1000, config.drainSeconds * 1000));
        for (const connection of connections) connection.terminate();
        hub.close();
        await busService.stop().catch(() => undefined);
        await ops.close();
      },
    };
  });
}
