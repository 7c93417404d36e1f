import { join, resolve } from 'node:path';
import { type AuthConfig, type AuthDatabase, checkAccount, loadAuthConfig, openAuthDatabase, startAuthService } from '@switchboard/auth';
import { type Bus, connectNatsBus, createMemoryBus } from '@switchboard/bus';
import { createEmbeddedDb, type Database, openWhenReachable } from '@switchboard/db';
import { type GatewayConfig, loadGatewayConfig, startGateway } from '@switchboard/gateway';
import { createLogger, type Logger } from '@switchboard/logging';
import {
  loadPersistenceConfig,
  openPersistenceDatabase,
  type PersistenceConfig,
  type PersistenceDatabase,
  startPersistenceService,
} from '@switchboard/persistence';
import { createSubjects } from '@switchboard/protocol';
import { exitOnNatsClosed, type Stoppable } from '@switchboard/runtime';
import type { EmbeddedConfig } from './config.js';

export interface EmbeddedSystem extends Stoppable {
  /** Where users reach it (as printed in the banner). `authApi` is where this process reaches its own auth API. */
  readonly urls: { page: string; websocket: string; auth: string; authApi: string };
  readonly bus: 'in-process' | 'NATS';
  readonly database: string;
  /** The account of that name, if any, and whether the password opens it (see `checkAccount`). */
  checkAccount(credentials: {
    username: string;
    password: string;
  }): Promise<{ role: string; passwordMatches: boolean; disabled: boolean } | undefined>;
}

/** `host` as a URL takes it, `wildcard` standing in for every interface: an IPv6 address goes in brackets. */
const urlHost = (host: string, wildcard: string) =>
  host === '0.0.0.0' || host === '::' ? wildcard : host.includes(':') ? `[${host}]` : host;

/** The host of the URLs the banner prints: every interface is reached as localhost. */
export const displayHost = (host: string) => urlHost(host, 'localhost');

/** How this process reaches its own listener on `host`: a wildcard address through loopback. */
const ownHost = (host: string) => urlHost(host, '127.0.0.1');

/**
 * `pending`, or as soon as `signal` is aborted a rejection with its reason. What `pending` comes
 * to after that goes to `discard`, so that nothing opened late is left open.
 */
function untilAborted<T>(pending: Promise<T>, signal: AbortSignal | undefined, discard: (late: T) => unknown): Promise<T> {
  if (signal === undefined) return pending;
  return new Promise<T>((resolve, reject) => {
    const abort = () => {
      reject(signal.reason);
      void pending.then(discard).catch(() => undefined);
    };
    if (signal.aborted) return abort();
    signal.addEventListener('abort', abort, { once: true });
    pending.finally(() => signal.removeEventListener('abort', abort)).then(resolve, reject);
  });
}

/**
 * Each service's configuration, read from this process's settings as each reads its own variables.
 * @throws ConfigError naming the variable, for `loadConfigOrExit` to print.
 */
export function loadServiceConfigs(config: EmbeddedConfig): {
  authConfig: AuthConfig;
  persistenceConfig: PersistenceConfig;
  gatewayConfig: GatewayConfig;
} {
  // Each service reads its own variables; here they come from this process's settings.
  const shared = {
    ...process.env,
    HOST: config.HOST,
    LOG_LEVEL: config.LOG_LEVEL,
    ...(config.NATS_URL ? { NATS_URL: config.NATS_URL } : {}),
    ...(config.DATABASE_URL ? { DATABASE_URL: config.DATABASE_URL } : {}),
  };
  const authConfig = loadAuthConfig({
    ...shared,
    PORT: String(config.AUTH_PORT),
    OPS_PORT: String(config.AUTH_OPS_PORT),
    ...(config.admin ? { ADMIN_USERNAME: config.admin.username, ADMIN_PASSWORD: config.admin.password } : {}),
  });
  const persistenceConfig = loadPersistenceConfig({ ...shared, OPS_PORT: String(config.PERSISTENCE_OPS_PORT) });
  const gatewayConfig = loadGatewayConfig({ ...shared, PORT: String(config.PORT), OPS_PORT: String(config.OPS_PORT) });
  return { authConfig, persistenceConfig, gatewayConfig };
}

/**
 * Runs auth, persistence and the gateway in this process: the same service code and migrations
 * as in production, with only the transport (in-process bus or NATS) and the database driver
 * (embedded PostgreSQL or a server) chosen here.
 *
 * When `signal` is aborted before it has finished, it closes what it has opened (the database
 * above all: its lock must go) and rejects with `signal.reason`. It gives up at once while it
 * waits for NATS, which can be forever, and otherwise once the step under way is done.
 */
export async function startEmbedded(config: EmbeddedConfig, logger: Logger, signal?: AbortSignal): Promise<EmbeddedSystem> {
  const { authConfig, persistenceConfig, gatewayConfig } = loadServiceConfigs(config);
  const dataDir = resolve(config.DATA_DIR);
  const authLogger = createLogger({ name: 'auth', level: config.LOG_LEVEL });
  const persistenceLogger = createLogger({ name: 'persistence', level: config.LOG_LEVEL });

  const started: Stoppable[] = [];
  /** Each service's own pool on a server, or the one embedded PGlite for both. */
  let authDb: Database<AuthDatabase> | undefined;
  let persistenceDb: Database<PersistenceDatabase> | undefined;
  const closeDatabases = () =>
    [...new Set<{ destroy(): Promise<void> }>([authDb, persistenceDb].filter((db) => db !== undefined))].map((db) => () => db.destroy());
  let bus: Bus | undefined;
  /**
   * Stops what has started: the newest (the gateway) first, so that no client sends into services
   * that are stopping, then the others at once, so that their waits (persistence's batch in hand,
   * auth's requests) share the 30 s a process has rather than add up; then the bus and the
   * databases. Every step runs, even after one fails, so the database is always closed.
   */
  const stopAll = async () => {
    const failures: unknown[] = [];
    const run = async (step: () => Promise<unknown> | undefined) => {
      try {
        await step();
      } catch (error) {
        failures.push(error);
      }
    };
    const [newest, ...older] = [...started].reverse();
    started.length = 0;
    if (newest) await run(() => newest.stop());
    await Promise.all(older.map((service) => run(() => service.stop())));
    await run(() => bus?.close());
    // Together: each close may wait for statements to end (6 s at most), and one after the other
    // they could take a stop past the 30 s.
    await Promise.all(closeDatabases().map((close) => run(close)));
    if (failures.length > 0) throw failures.length === 1 ? failures[0] : new AggregateError(failures, 'stopping failed');
  };
  try {
    if (config.DATABASE_URL) {
      // Each service migrates, then opens a pool of its own, as when it runs on its own: with its
      // own query timeout, and persistence's inbound worker never waiting behind auth's queries.
      // A server not answering yet (starting beside this process, failing over) is waited for as
      // they wait for it; before, the start failed at the first refused connection.
      const poolSize = config.DATABASE_POOL_SIZE;
      const url = config.DATABASE_URL;
      authDb = await openWhenReachable(
        () => openAuthDatabase(url, { poolSize, logger: authLogger, ensureSigningKey: authConfig.privateKeyPem === undefined, signal }),
        { logger: authLogger, signal },
      );
      signal?.throwIfAborted();
      persistenceDb = await openWhenReachable(() => openPersistenceDatabase(url, { poolSize, logger: persistenceLogger, signal }), {
        logger: persistenceLogger,
        signal,
      });
    } else {
      const embedded = await createEmbeddedDb({ dataDir: join(dataDir, 'postgres') });
      authDb = embedded as Database<AuthDatabase>;
      persistenceDb = embedded as Database<PersistenceDatabase>;
    }
    signal?.throwIfAborted();
    if (config.NATS_URL) {
      const connecting = connectNatsBus({
        servers: gatewayConfig.natsServers,
        name: 'switchboard',
        subjects: createSubjects(gatewayConfig.subjectPrefix),
        logger,
        onClosed: exitOnNatsClosed(logger),
      });
      bus = await untilAborted(connecting, signal, (late) => late.close());
    } else bus = createMemoryBus({ logger: logger.child({ module: 'bus' }) });
    signal?.throwIfAborted();
    const authDatabase = authDb;
    const auth = await startAuthService({
      config: authConfig,
      logger: authLogger,
      bus,
      database: authDb,
      signal,
    });
    started.push(auth);
    signal?.throwIfAborted();
    started.push(
      await startPersistenceService({
        config: persistenceConfig,
        logger: persistenceLogger,
        bus,
        database: persistenceDb,
        signal,
      }),
    );
    signal?.throwIfAborted();
    const gateway = await startGateway({
      // The demo page finds auth on the port it really listens on.
      config: { ...gatewayConfig, publicAuthPort: auth.port },
      logger: createLogger({ name: 'gateway', level: config.LOG_LEVEL }),
      bus,
    });
    started.push(gateway);
    const host = displayHost(config.HOST);
    return {
      urls: {
        page: `http://${host}:${gateway.port}/`,
        websocket: `ws://${host}:${gateway.port}/ws`,
        auth: `http://${host}:${auth.port}`,
        authApi: `http://${ownHost(config.HOST)}:${auth.port}`,
      },
      bus: config.NATS_URL ? 'NATS' : 'in-process',
      checkAccount: (credentials) => checkAccount(authDatabase.db, credentials),
      database: config.DATABASE_URL ? 'PostgreSQL server' : `embedded PostgreSQL in ${join(dataDir, 'postgres')}`,
      stop: stopAll,
    };
  } catch (error) {
    await stopAll().catch((failure: unknown) => logger.error({ err: failure }, 'stopping after a failed start failed'));
    throw error;
  }
}

/**
 * Makes sure the demo agent can log in with the credentials the banner prints: true when it can.
 * The account is looked up in the database, not tried as a login (a failed login counts against
 * the address and the name, at every start). Only a name nobody has is created, as the admin;
 * one taken by another account, or opened by another password, is false.
 */
export async function ensureDemoAgent(
  system: Pick<EmbeddedSystem, 'checkAccount' | 'urls'>,
  admin: { username: string; password: string },
  agent: { username: string; password: string },
): Promise<boolean> {
  const existing = await system.checkAccount(agent);
  if (existing) return existing.role === 'agent' && existing.passwordMatches && !existing.disabled;
  const post = (path: string, body: unknown, token?: string) =>
    fetch(`${system.urls.authApi}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
  const login = await post('/v1/token', admin);
  if (!login.ok) throw new Error(`could not log in as the admin to create the demo agent (${login.status})`);
  const { access_token: token } = (await login.json()) as { access_token: string };
  const created = await post('/v1/users', { ...agent, role: 'agent', display_name: 'Demo agent' }, token);
  if (created.status === 409) return false;
  if (!created.ok) throw new Error(`could not create the demo agent (${created.status})`);
  return true;
}
