import { type Bus, encodeJson } from '@switchboard/bus';
import { createDb, type Database, migrateToLatest, openWhenReachable, withDb } from '@switchboard/db';
import type { Logger } from '@switchboard/logging';
import { createSubjects, type TokenRevocation } from '@switchboard/protocol';
import {
  counterTotal,
  createMetricsRegistry,
  type StartingProbes,
  type Stoppable,
  startInParts,
  startOpsServer,
} from '@switchboard/runtime';
import { createTokenVerifier } from '@switchboard/tokens';
import type { Kysely } from 'kysely';
import { authServiceSpec } from './bus-service.js';
import type { AuthConfig } from './config.js';
import type { AuthDatabase } from './db/schema.js';
import { findUserByUsername, insertUser, setPasswordHash, UsernameTakenError, updateUser } from './db/user.repository.js';
import { buildHttpApp } from './http/app.js';
import { createLoginThrottle } from './login-throttle.js';
import { createAuthMetrics } from './metrics.js';
import { migrations } from './migrations/index.js';
import { createPasswordHasher, hashPassword, verifyPassword } from './passwords.js';
import { createTokenIssuer } from './token/access-tokens.js';
import { JWKS_CACHE_MS, openKeyRing } from './token/key-ring.js';
import { ensureStoredSigningKey } from './token/signing-keys.js';

export interface AuthServiceOptions {
  config: AuthConfig;
  logger: Logger;
  /** The message bus and the database, created (and closed) by the caller. */
  bus: Bus;
  database: Database<AuthDatabase>;
  /** The probes the caller answered while it connected (`serveStartingProbes`); the ops server takes their port. */
  startingProbes?: StartingProbes;
  /** Ends a wait for the migration lock at start with its reason: a SIGTERM meanwhile. */
  signal?: AbortSignal;
}

export interface AuthService extends Stoppable {
  readonly port: number;
  readonly opsPort: number;
}

/**
 * Migrates the auth tables and, with `ensureSigningKey`, makes sure a signing key is stored (under
 * the migrations' lock, so replicas starting together store one).
 */
export async function migrateAuth(
  db: Kysely<AuthDatabase>,
  logger: Logger,
  { ensureSigningKey, signal }: { ensureSigningKey: boolean; signal?: AbortSignal },
): Promise<void> {
  await migrateToLatest(db as Kysely<unknown>, {
    owner: 'auth',
    migrations,
    logger,
    signal,
    afterMigrate: async (conn) => {
      if (ensureSigningKey) await ensureStoredSigningKey(conn as Kysely<AuthDatabase>);
    },
  });
}

/**
 * A statement unanswered this long fails, and its request gets 503 (createDb's `queryTimeoutMs`).
 * Auth's queries take milliseconds; without it a login on a connection that hangs (a network
 * partition, a failover that moves the address) waited until TCP gave up, about 15 minutes.
 */
const QUERY_TIMEOUT_MS = 10_000;
/** On a stop, how long requests under way may take before their connections are closed. */
const STOP_REQUESTS_GRACE_MS = 10_000;

/**
 * Auth's database on a PostgreSQL server: migrated first, on a pool without the query timeout
 * (a migration may run, or wait for another replica's lock, for longer), then the service's pool
 * of `poolSize` with it. The service's own check at start then finds nothing to do. An abort of
 * `signal` ends a wait for another replica's migration lock.
 */
export async function openAuthDatabase(
  url: string,
  { poolSize, logger, ensureSigningKey, signal }: { poolSize: number; logger: Logger; ensureSigningKey: boolean; signal?: AbortSignal },
): Promise<Database<AuthDatabase>> {
  await withDb<AuthDatabase, void>({ url, applicationName: 'switchboard-auth-migrate' }, (db) =>
    migrateAuth(db, logger, { ensureSigningKey, signal }),
  );
  return createDb<AuthDatabase>({ url, poolSize, applicationName: 'switchboard-auth', queryTimeoutMs: QUERY_TIMEOUT_MS });
}

/**
 * Makes the admin ADMIN_USERNAME and ADMIN_PASSWORD name: created when no account has the name,
 * its password set to ADMIN_PASSWORD when it was changed since.
 */
async function bootstrapAdmin(
  db: Kysely<AuthDatabase>,
  admin: { username: string; password: string },
  logger: Logger,
  revokeTokens: (userId: number, tokenVersion: number) => void,
) {
  // Someone signed up with the name first: starting would leave the deployment without the admin
  // it was configured with, and the name to a stranger. (An operator who demoted that admin since
  // sees this too, and sets ADMIN_USERNAME to the admin now in charge.)
  const refuseTaken = (role: string) => {
    throw new Error(
      `ADMIN_USERNAME ${admin.username} is taken by an account with the role ${role}: choose another name, or make that account an admin in the database`,
    );
  };
  const existing = await findUserByUsername(db, admin.username);
  if (existing?.role === 'admin') {
    // Disabled in the database (the API refuses to): enabled again, as the configuration says it
    // is the admin, and as a way back in should every other admin be gone.
    if (existing.disabled_at !== null && (await updateUser(db, existing.id, { disabled: false })))
      logger.warn({ username: admin.username }, 'bootstrap admin enabled again: ADMIN_USERNAME names it');
    // ADMIN_PASSWORD is the admin's password: changed there (after a leak, or from the example's
    // default), it replaces the stored one at the next start, one set through the API included.
    if (await verifyPassword(existing.password_hash, admin.password)) return;
    const tokenVersion = await setPasswordHash(db, existing.id, 'admin', await hashPassword(admin.password));
    if (tokenVersion === undefined) return;
    logger.warn({ username: admin.username }, 'bootstrap admin password replaced by ADMIN_PASSWORD');
    // After a leak, the tokens got with the old password must stop working too.
    revokeTokens(existing.id, tokenVersion);
    return;
  }
  if (existing) refuseTaken(existing.role);
  try {
    await insertUser(db, { username: admin.username, passwordHash: await hashPassword(admin.password), role: 'admin', displayName: null });
    logger.info({ username: admin.username }, 'bootstrap admin created');
  } catch (error) {
    if (!(error instanceof UsernameTakenError)) throw error;
    // Created meanwhile: by another replica (an admin), or by a sign-up.
    const taken = await findUserByUsername(db, admin.username);
    if (taken && taken.role !== 'admin') refuseTaken(taken.role);
  }
}

/** Starts the auth service: HTTP API, ops endpoints and its service on the bus. */
export async function startAuthService({
  config,
  logger,
  bus,
  database,
  startingProbes,
  signal,
}: AuthServiceOptions): Promise<AuthService> {
  const subjects = createSubjects(config.subjectPrefix);
  const registry = createMetricsRegistry('auth');
  const metrics = createAuthMetrics(registry);
  let draining = false;

  const { db } = database;
  // Migrated on the service's pool too (a no-op after the first step of main.ts), and PostgreSQL
  // waited for as there: it may have gone away while the start waited for NATS, for minutes
  // perhaps. Before, the start then failed, and the pod was restarted with a back-off that grew.
  await openWhenReachable(() => migrateAuth(db, logger, { ensureSigningKey: config.privateKeyPem === undefined, signal }), {
    logger,
    signal,
  });
  return startInParts(async (running) => {
    // Before serving or signing anything: the key is recorded, so replicas already running publish it.
    const keys = await openKeyRing(db, { configuredPem: config.privateKeyPem, ttlSeconds: config.accessTokenTtlSeconds, logger });
    running({ stop: async () => keys.stop() });
    logger.info({ kid: keys.active.kid, alg: keys.active.alg }, 'signing key loaded');
    /** Tells the gateways that the user's tokens below `tokenVersion` are revoked. */
    const revokeTokens = (userId: number, tokenVersion: number) => {
      const revocation: TokenRevocation = { user_id: userId, token_version: tokenVersion };
      try {
        bus.publish(subjects.authRevocations, encodeJson(revocation));
      } catch (error) {
        // The change stands; the tokens then stay valid on the gateways until they expire.
        logger.error({ err: error, userId }, "the user's tokens could not be revoked on the gateways");
      }
    };
    if (config.admin) await bootstrapAdmin(db, config.admin, logger, revokeTokens);

    const stats = async () => ({
      logins: await counterTotal(metrics.logins, { outcome: 'success' }),
      failed_logins: await counterTotal(metrics.logins, { outcome: 'failure' }),
      tokens_issued: (await counterTotal(metrics.tokensIssued)) - (await counterTotal(metrics.tokensIssued, { kind: 'service_refused' })),
    });
    const busService = running(await bus.addService(authServiceSpec({ subjects, jwks: () => keys.jwks(), stats })));

    const throttle = (scope: string, maxFailures: number, windowMs: number) =>
      createLoginThrottle({
        db,
        scope,
        maxFailures,
        windowMs,
        onSweepError: (error) => logger.warn({ err: error }, 'deleting expired login windows failed'),
      });
    const http = buildHttpApp({
      db,
      passwords: createPasswordHasher({ concurrency: config.passwordHashConcurrency, maxWaiting: config.passwordHashQueue }),
      tokens: createTokenIssuer({ keys, issuer: config.issuer, audience: config.audience, ttlSeconds: config.accessTokenTtlSeconds }),
      verifier: createTokenVerifier({
        keySource: { fetchKeys: () => keys.jwks() },
        issuer: config.issuer,
        audience: config.audience,
        // The key ring is local and caches its reads itself: a key whose row is deleted (withdrawn
        // after a leak) is refused here as soon as it leaves the JWKS, not after the verifier's
        // default 10 minutes.
        maxKeyAgeMs: JWKS_CACHE_MS,
        // For the same reason, a kid not among the keys is looked up again at once, which costs no
        // more than that cache: a token of a key never published (or withdrawn) is refused for good
        // with 401, not held back with a 503 as a key too new to be known yet would be.
        minRefetchIntervalMs: 0,
      }),
      jwks: () => keys.jwks(),
      apiKeys: config.apiKeys,
      throttles: {
        user: throttle('user', config.loginMaxFailures, config.loginFailureWindowMs),
        account: throttle('account', config.loginMaxFailuresPerUsername, config.loginFailureWindowMs),
        address: throttle('address', config.loginMaxFailuresPerAddress, config.loginFailureWindowMs),
        successes: throttle('successes', config.loginMaxSuccessesPerUsername, config.loginFailureWindowMs),
        registration: throttle('registration', config.registrationMaxPerAddress, config.registrationWindowMs),
      },
      metrics,
      logger,
      revokeTokens,
      trustProxy: config.trustProxy,
      corsOrigins: config.corsOrigins,
      bootstrapAdmin: config.admin?.username,
    });
    await http.listen({ port: config.port, host: config.host });
    // Fastify's close stops accepting and waits for in-flight requests; a request still unfinished
    // after STOP_REQUESTS_GRACE_MS (a client that stopped sending its body) has its connection
    // closed, so that the stop ends within the contract's 30 s.
    const closeHttp = async () => {
      const closed = http.close();
      const grace = setTimeout(() => http.server.closeAllConnections(), STOP_REQUESTS_GRACE_MS);
      await closed.finally(() => clearTimeout(grace));
    };
    running({ stop: closeHttp });
    const address = http.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;

    const ops = await startOpsServer({
      port: config.opsPort,
      host: config.host,
      registry,
      logger,
      replacing: startingProbes,
      checks: { bus: bus.isConnected, database: database.isHealthy, accepting: () => !draining },
    });
    logger.info({ port, opsPort: ops.port }, 'auth service listening');

    return {
      port,
      opsPort: ops.port,
      async stop() {
        draining = true;
        await closeHttp();
        await busService.stop().catch(() => undefined);
        keys.stop();
        await ops.close();
      },
    };
  });
}
