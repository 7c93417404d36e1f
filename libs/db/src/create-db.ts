import { connect as connectSocket } from 'node:net';
import { settlesWithin } from '@switchboard/runtime';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { errorCode } from './connection-errors.js';
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
   * gives up, about 15 minutes. The server cancels the statement itself a second later
   * (`statement_timeout`). None by default: migrations may run, or wait for their lock, long.
   */
  queryTimeoutMs?: number;
  /**
   * How long `destroy()` lets statements still running finish (5 s by default). Past it they are
   * cancelled and their connections closed: a statement waiting for a row lock held elsewhere, or
   * on a connection whose packets are dropped, otherwise held the close until the query timeout,
   * and a service's stop past the 30 s it has after SIGTERM.
   */
  closeTimeoutMs?: number;
}

/** The health probe: answers, and whether a transaction there would be read-only. */
/** SQLSTATE of a connection the server ended for being idle too long (`idle_session_timeout`). */
const IDLE_SESSION_TIMEOUT = '57P05';

const READ_ONLY_PROBE = "select current_setting('transaction_read_only') as read_only";

/**
 * How much longer the server lets a statement run than the client waits for it (`queryTimeoutMs`):
 * the client's timeout comes first, so a statement that outlasts it is still a connection error to
 * retry, never a cancelled statement taken for one the database refuses.
 */
const STATEMENT_TIMEOUT_MARGIN_MS = 1_000;

/** How long a cancelled statement may take to give its connection back before the connection is closed. */
const CANCEL_GRACE_MS = 1_000;

/** What pg keeps of each connection, for a cancel request; its type declarations leave it out. */
interface CancelKey {
  host?: string;
  port?: number;
  processID?: number | null;
  secretKey?: number | null;
}

/** PostgreSQL's CancelRequest code (protocol 3.0). */
const CANCEL_REQUEST_CODE = 80_877_102;

/**
 * Sends the protocol's cancel request for one connection, on a socket of its own, as libpq does.
 * Unlike `pg_cancel_backend(pid)` it needs no rights and goes through PgBouncer, which hands
 * clients keys of its own and forwards their cancels. Best effort: resolves once the server has
 * closed the socket, or on an error, or after CANCEL_GRACE_MS.
 */
function sendCancelRequest({ host = 'localhost', port = 5432, processID, secretKey }: CancelKey): Promise<void> {
  if (typeof processID !== 'number' || typeof secretKey !== 'number') return Promise.resolve();
  return new Promise((resolve) => {
    const socket = host.startsWith('/') ? connectSocket(`${host}/.s.PGSQL.${port}`) : connectSocket(port, host);
    const done = () => {
      socket.destroy();
      resolve();
    };
    socket.setTimeout(CANCEL_GRACE_MS, done);
    socket.once('error', done);
    socket.once('close', done);
    socket.once('connect', () => {
      const request = Buffer.alloc(16);
      request.writeInt32BE(16, 0);
      request.writeInt32BE(CANCEL_REQUEST_CODE, 4);
      request.writeInt32BE(processID, 8);
      request.writeInt32BE(secretKey, 12);
      socket.end(request);
    });
  });
}

/**
 * Asks the server to cancel what these connections are running. A cancelled statement commits
 * nothing, whereas one whose connection is merely closed still commits once its lock is free.
 */
async function cancelStatements(clients: readonly pg.PoolClient[]): Promise<void> {
  await Promise.all(clients.map((client) => sendCancelRequest(client as unknown as CancelKey)));
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
  closeTimeoutMs = 5_000,
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
    const connectionLost = (error: unknown) => {
      // The server ending a connection idle past its idle_session_timeout (a managed database's
      // setting, say) says nothing of the database: after each burst of work, every idle
      // connection it ended took the service out of its Service's endpoints until the next probe.
      if (errorCode(error) === IDLE_SESSION_TIMEOUT) return;
      healthy = false;
    };
    watched.on('error', connectionLost);
    watched.on('connect', (client) => client.on('error', connectionLost));
  };
  watchConnections(pool);
  // The connections handed out and not yet given back, for a close that cannot wait for them.
  const inUse = new Set<pg.PoolClient>();
  pool.on('acquire', (client) => inUse.add(client));
  pool.on('release', (_error, client) => inUse.delete(client));
  // The server gives up on a statement a moment after the client has: a statement the client
  // stopped waiting for (a row lock held elsewhere for long) would otherwise stay queued on the
  // server, one more with each retry on a new connection, and commit once the lock is freed. Set
  // for the session rather than in the startup packet, which PgBouncer refuses by default.
  const sessionSettings =
    queryTimeoutMs === undefined ? settings : { ...settings, statement_timeout: `${queryTimeoutMs + STATEMENT_TIMEOUT_MARGIN_MS}ms` };
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: preparingPool(pool, { settings: sessionSettings }) }) });

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
      const result = await Promise.race([client.query<{ read_only: string }>(READ_ONLY_PROBE), timedOut]);
      client.release();
      // A database that answers but cannot take writes (a primary demoted to a standby in a
      // failover, a read-only setting) serves none of the services: ready means writable.
      healthy = result.rows[0]?.read_only === 'off';
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
      const closed = Promise.all([db.destroy(), probePool.end()]);
      if (!(await settlesWithin(closed, closeTimeoutMs))) {
        await cancelStatements([...inUse]);
        // A statement still running after its cancel (the server never got it) loses its
        // connection: pg then fails it, and its connection goes back to the pool to be closed.
        if (!(await settlesWithin(closed, CANCEL_GRACE_MS))) for (const client of inUse) void client.end().catch(() => undefined);
      }
      await closed;
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
