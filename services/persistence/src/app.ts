import { type Bus, BusError } from '@switchboard/bus';
import { createDb, type Database, migrateToLatest, openWhenReachable, withDb } from '@switchboard/db';
import type { Logger } from '@switchboard/logging';
import { BusErrorCode, createSubjects } from '@switchboard/protocol';
import {
  counterTotal,
  createMetricsRegistry,
  type StartingProbes,
  type Stoppable,
  startInParts,
  startOpsServer,
  valueWithin,
  waitWhileUnavailable,
} from '@switchboard/runtime';
import type { Kysely } from 'kysely';
import { persistenceServiceSpec } from './api/endpoints.js';
import type { PersistenceConfig } from './config.js';
import { PERSISTENCE_CONNECTION_SETTINGS } from './db/connection-settings.js';
import type { PersistenceDatabase } from './db/schema.js';
import { startInboundConsumer } from './inbound/consumer.js';
import { createPersistenceMetrics } from './metrics.js';
import { migrations } from './migrations/index.js';

export const CONSUMER_STATS_INTERVAL_MS = 5_000;
/** How long `$SRV.STATS` waits for the inbound consumer's figures before answering without them. */
const STATS_JETSTREAM_WAIT_MS = 500;

/**
 * Connections of the pool the inbound consumer needs at once: its batches and dead letters are
 * written one after another, each statement on one connection. (The readiness probe has a pool
 * of its own.)
 */
const INBOUND_CONNECTIONS = 1;

/**
 * Requests the API handles at once with a pool of `poolSize` (at least 2, see config.ts): the rest
 * of the pool once the inbound consumer's connection is set aside, and never none. The API and the consumer share
 * the pool, whose waiters are served in arrival order: unbounded, a flood of requests (a
 * reconnect storm of joins, many history reads) queued each batch behind them, its wait for a
 * connection failed after 5 s as if the database were down, and the batch went to the back of
 * the line again, so that messages were barely stored and their senders got `unavailable`.
 */
function apiConcurrency(poolSize: number): number {
  return Math.max(1, poolSize - INBOUND_CONNECTIONS);
}

export interface PersistenceServiceOptions {
  config: PersistenceConfig;
  logger: Logger;
  /** The message bus and the database, created (and closed) by the caller. */
  bus: Bus;
  database: Database<PersistenceDatabase>;
  /** The probes the caller answered while it connected (`serveStartingProbes`); the ops server takes their port. */
  startingProbes?: StartingProbes;
  /** Ends a wait at start (for the migration lock, for JetStream) with its reason: a SIGTERM meanwhile. */
  signal?: AbortSignal;
}

export interface PersistenceService extends Stoppable {
  readonly opsPort: number;
}

export function migratePersistence(db: Kysely<PersistenceDatabase>, logger: Logger, signal?: AbortSignal): Promise<void> {
  return migrateToLatest(db as Kysely<unknown>, { owner: 'persistence', migrations, logger, signal });
}

/**
 * A statement unanswered this long fails and is retried on a new connection (createDb's
 * `queryTimeoutMs`). The batch insert takes milliseconds; a stuck one would hold its messages.
 */
const QUERY_TIMEOUT_MS = 30_000;

/**
 * Persistence's database on a PostgreSQL server: migrated first, on a pool without the query
 * timeout (a migration may run, or wait for another replica's lock, for longer), then the
 * service's pool of `poolSize` with it and its connection settings. The service's own check at
 * start then finds nothing to do. An abort of `signal` ends a wait for another replica's
 * migration lock.
 */
export async function openPersistenceDatabase(
  url: string,
  { poolSize, logger, signal }: { poolSize: number; logger: Logger; signal?: AbortSignal },
): Promise<Database<PersistenceDatabase>> {
  await withDb<PersistenceDatabase, void>({ url, applicationName: 'switchboard-persistence-migrate' }, (db) =>
    migratePersistence(db, logger, signal),
  );
  return createDb<PersistenceDatabase>({
    url,
    poolSize,
    applicationName: 'switchboard-persistence',
    settings: PERSISTENCE_CONNECTION_SETTINGS,
    queryTimeoutMs: QUERY_TIMEOUT_MS,
  });
}

/** Starts persistence: migrations, the inbound stream and its consumer, the request/reply API, ops endpoints. */
export async function startPersistenceService({
  config,
  logger,
  bus,
  database,
  startingProbes,
  signal,
}: PersistenceServiceOptions): Promise<PersistenceService> {
  const subjects = createSubjects(config.subjectPrefix);
  const registry = createMetricsRegistry('persistence');
  const metrics = createPersistenceMetrics(registry);
  let draining = false;

  // Migrated on the service's pool too (a no-op after the first step of main.ts), and PostgreSQL
  // waited for as there: it may have gone away while the start waited for NATS, for minutes
  // perhaps. Before, the start then failed, and the pod was restarted with a back-off that grew.
  await openWhenReachable(() => migratePersistence(database.db, logger, signal), { logger, signal });
  // A NATS that does not answer for JetStream yet (a cluster starting cold, without a leader) is
  // waited for, alive and not ready, as PostgreSQL is; before, the start failed and crash-looped.
  await waitWhileUnavailable(() => bus.ensureInboundStream(config.inbound), {
    logger,
    signal,
    what: 'JetStream',
    isUnavailable: (error) => error instanceof BusError && error.code === BusErrorCode.Unavailable,
  });

  const stats = async () => ({
    stored: await counterTotal(metrics.messages, { outcome: 'stored' }),
    duplicates: await counterTotal(metrics.messages, { outcome: 'duplicate' }),
    dead_lettered: await counterTotal(metrics.messages, { outcome: 'dead_lettered' }),
    // Left out unless JetStream answers at once: nats.js holds the `$SRV.STATS` reply for it, and
    // JetStream's API waits 5 s, longer than `npm run status` (1.5 s), which would then report a
    // running persistence as missing while JetStream elects a leader.
    ...(await valueWithin(bus.inboundStats(), STATS_JETSTREAM_WAIT_MS, {})),
  });
  return startInParts(async (running) => {
    const service = running(
      await bus.addService(
        persistenceServiceSpec({
          db: database.db,
          subjects,
          logger,
          stats,
          sessionCreateLimit: config.sessionCreateLimit,
          concurrency: apiConcurrency(config.databasePoolSize),
          maxPayload: () => bus.maxPayload(),
        }),
      ),
    );
    const consumer = running(
      await startInboundConsumer({
        bus,
        inbound: config.inbound,
        db: database.db,
        subjects,
        batchMax: config.batchMax,
        batchMaxBytes: config.batchMaxBytes,
        logger,
        metrics,
        faultInjection: config.faultInjection,
      }),
    );

    const ops = await startOpsServer({
      port: config.opsPort,
      host: config.host,
      registry,
      logger,
      replacing: startingProbes,
      checks: { bus: bus.isConnected, database: database.isHealthy, consumer: consumer.isConsuming, accepting: () => !draining },
    });
    // Started last, with nothing left to fail.
    const statsTimer = setInterval(() => {
      bus.inboundStats().then(
        (stats) => {
          metrics.consumerPending.set(stats.pending);
          metrics.consumerAckPending.set(stats.ackPending);
        },
        () => undefined,
      );
    }, CONSUMER_STATS_INTERVAL_MS);
    statsTimer.unref();
    logger.info({ opsPort: ops.port, stream: subjects.inboundStream }, 'persistence service running');

    return {
      opsPort: ops.port,
      async stop() {
        draining = true;
        clearInterval(statsTimer);
        // Side by side: each may wait out its bound (the batch in hand 10 s, the requests being
        // answered 2 + 10 s) when PostgreSQL and NATS hang, and one after the other, with the
        // bus's and the database's closes after them, they took the stop past its 30 s.
        // Both awaited whatever either does; the service's failure was ignored before too.
        const [consumerStopped] = await Promise.allSettled([consumer.stop(), service.stop()]);
        await ops.close();
        if (consumerStopped.status === 'rejected') throw consumerStopped.reason;
      },
    };
  });
}
