import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { type ConnectionSettings, preparingPool } from './prepared.js';

const INT8_OID = 20;

/**
 * Ids are `bigint` columns but positive integers in JSON (contract §2): parse int8 to a number,
 * which is exact up to 2^53. Set per pool, not on pg's global type registry.
 */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  },
};

export interface CreateDbOptions {
  url: string;
  poolSize?: number;
  /** Shown in pg_stat_activity. */
  applicationName: string;
  healthProbeIntervalMs?: number;
  /**
   * Settings every connection takes when it opens; the server's otherwise. Persistence plans its
   * statements once per connection (`plan_cache_mode = force_generic_plan`, see
   * `PERSISTENCE_CONNECTION_SETTINGS`).
   */
  settings?: ConnectionSettings;
  /**
   * How long a statement may go unanswered before it fails (as a connection error) and its
   * connection is thrown away. A connection whose packets are dropped without a reset (a network
   * partition, a failover that moves the address) would otherwise hold its statement until TCP
   * gives up, about 15 minutes. None by default: migrations may run, or wait for their lock, long.
   */
  queryTimeoutMs?: number;
}

/** A database handle for a service; whoever creates it destroys it. */
export interface Database<DB> {
  readonly db: Kysely<DB>;
  /** True while the last health probe (`select 1`, every couple of seconds) succeeded. */
  isHealthy(): boolean;
  destroy(): Promise<void>;
}

/** PostgreSQL over a `pg` pool. */
export function createDb<DB>({
  url,
  poolSize = 10,
  applicationName,
  healthProbeIntervalMs = 2_000,
  settings,
  queryTimeoutMs,
}: CreateDbOptions): Database<DB> {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    application_name: applicationName,
    types,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    ...(queryTimeoutMs === undefined ? {} : { query_timeout: queryTimeoutMs }),
  });
  let healthy = true;
  // A connection lost while idle is reported by the pool, which replaces it. One lost while
  // checked out (in a query or transaction) is reported by its client: pg fails the queries on it
  // and then emits 'error' on the client, and kysely listens for none, so without this listener
  // a database going away mid-query crashed the process with an uncaught ECONNRESET.
  const watchConnections = (watched: pg.Pool) => {
    const connectionLost = () => {
      healthy = false;
    };
    watched.on('error', connectionLost);
    watched.on('connect', (client) => client.on('error', connectionLost));
  };
  watchConnections(pool);
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: preparingPool(pool, { settings }) }) });

  // Readiness follows a cheap probe rather than the outcome of application queries. The probe has
  // a connection of its own, so a pool busy with (or stuck retrying) application work cannot hold
  // it up, and a deadline, so a database that stops answering turns unready as surely as one that
  // refuses connections.
  const probeTimeoutMs = Math.min(healthProbeIntervalMs, 2_000);
  const probePool = new pg.Pool({
    connectionString: url,
    max: 1,
    application_name: `${applicationName}:health`,
    connectionTimeoutMillis: probeTimeoutMs,
  });
  watchConnections(probePool);
  let probing = false;
  const probe = async () => {
    if (probing) return;
    probing = true;
    let deadline: NodeJS.Timeout | undefined;
    let client: pg.PoolClient | undefined;
    try {
      client = await probePool.connect();
      const timedOut = new Promise<never>((_, reject) => {
        deadline = setTimeout(() => reject(new Error('health probe timed out')), probeTimeoutMs);
      });
      await Promise.race([client.query('select 1'), timedOut]);
      client.release();
      healthy = true;
    } catch (error) {
      // A connection that failed or hung is thrown away, not reused.
      client?.release(error instanceof Error ? error : true);
      healthy = false;
    } finally {
      clearTimeout(deadline);
      probing = false;
    }
  };
  const timer = setInterval(() => void probe(), healthProbeIntervalMs);
  timer.unref();

  return {
    db,
    isHealthy: () => healthy,
    destroy: async () => {
      clearInterval(timer);
      await Promise.all([db.destroy(), probePool.end()]);
    },
  };
}

/** Opens a pool for one piece of work (migrations, say), and closes it when the work is done or has failed. */
export async function withDb<DB, T>(options: CreateDbOptions, use: (db: Kysely<DB>) => Promise<T>): Promise<T> {
  const database = createDb<DB>(options);
  try {
    return await use(database.db);
  } finally {
    await database.destroy();
  }
}
