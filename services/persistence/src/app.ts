import { createDb, migrateToLatest } from '@switchboard/db';
import type { Logger } from '@switchboard/logging';
import { connectNats } from '@switchboard/nats';
import { createSubjects } from '@switchboard/protocol';
import { createMetricsRegistry, type Stoppable, startOpsServer } from '@switchboard/runtime';
import type { Kysely } from 'kysely';
import { addPersistenceService } from './api/endpoints.js';
import type { PersistenceConfig } from './config.js';
import type { PersistenceDatabase } from './db/schema.js';
import { startInboundConsumer } from './inbound/consumer.js';
import { ensureInboundStream } from './inbound/stream.js';
import { createPersistenceMetrics } from './metrics.js';
import { migrations } from './migrations/index.js';

export const CONSUMER_STATS_INTERVAL_MS = 5_000;

export interface PersistenceServiceOptions {
  config: PersistenceConfig;
  logger: Logger;
}

export interface PersistenceService extends Stoppable {
  readonly opsPort: number;
}

export function migratePersistence(db: Kysely<PersistenceDatabase>, logger: Logger): Promise<void> {
  return migrateToLatest(db as Kysely<unknown>, { owner: 'persistence', migrations, logger });
}

/** Starts persistence: migrations, the inbound stream and its consumer, the request/reply API, ops endpoints. */
export async function startPersistenceService({ config, logger }: PersistenceServiceOptions): Promise<PersistenceService> {
  const subjects = createSubjects(config.subjectPrefix);
  const registry = createMetricsRegistry('persistence');
  const metrics = createPersistenceMetrics(registry);
  let draining = false;

  const database = createDb<PersistenceDatabase>({
    url: config.databaseUrl,
    poolSize: config.databasePoolSize,
    applicationName: 'switchboard-persistence',
  });
  await migratePersistence(database.db, logger);

  const nats = await connectNats({ servers: config.natsServers, name: 'switchboard-persistence', logger });
  const jsm = await nats.nc.jetstreamManager();
  await ensureInboundStream(jsm, subjects, config.inbound);

  const service = await addPersistenceService(nats.nc, { db: database.db, subjects, logger });
  const consumer = await startInboundConsumer({ nc: nats.nc, db: database.db, subjects, batchMax: config.batchMax, logger, metrics });

  const statsTimer = setInterval(() => {
    jsm.consumers.info(subjects.inboundStream, subjects.inboundConsumer).then(
      (info) => {
        metrics.consumerPending.set(info.num_pending);
        metrics.consumerAckPending.set(info.num_ack_pending);
      },
      () => undefined,
    );
  }, CONSUMER_STATS_INTERVAL_MS);
  statsTimer.unref();

  const ops = await startOpsServer({
    port: config.opsPort,
    host: config.host,
    registry,
    logger,
    checks: { nats: nats.isConnected, database: database.isHealthy, accepting: () => !draining },
  });
  logger.info({ opsPort: ops.port, stream: subjects.inboundStream }, 'persistence service running');

  return {
    opsPort: ops.port,
    async stop() {
      draining = true;
      clearInterval(statsTimer);
      await consumer.stop();
      await service.stop().catch(() => undefined);
      await nats.drain();
      await ops.close();
      await database.destroy();
    },
  };
}
