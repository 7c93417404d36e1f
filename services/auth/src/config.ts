import { isIP } from 'node:net';
import { ConfigError, commonEnv, commonSettings, databaseEnv, env, loadConfig } from '@switchboard/config';
import { z } from 'zod';
import { usernameSchema } from './http/schemas.js';

export const DEFAULT_PORT = 2347;
export const DEFAULT_OPS_PORT = 9401;
/** The shortest API key taken, as the chart's schema asks. */
export const API_KEY_MIN_LENGTH = 16;

const authEnv = {
  ...commonEnv,
  ...databaseEnv,
  PORT: env.port(DEFAULT_PORT),
  OPS_PORT: env.port(DEFAULT_OPS_PORT),
  /** Lifetime of access tokens; a number of seconds or a duration such as `15m`, `1h`. */
  ACCESS_TOKEN_TTL: env.duration({ default: '1h', min: '1s', max: '30d' }),
  JWT_ISSUER: env.string({ default: 'switchboard', exact: true }),
  JWT_AUDIENCE: env.string({ default: 'switchboard', exact: true }),
  /** PKCS#8 PEM of an Ed25519 or P-256 key; when unset a key is generated once and kept in the database. */
  JWT_PRIVATE_KEY: env.optionalString(),
  /**
   * Keys for `POST /v1/service-token`, which can mint an admin's token. Wrong keys are not
   * throttled, so each must be long enough not to be guessed (the chart asks the same).
   */
  AUTH_API_KEYS: env
    .list()
    .refine(
      (keys) => keys.every((key) => key.length >= API_KEY_MIN_LENGTH),
      `each key must be at least ${API_KEY_MIN_LENGTH} characters: make one with \`openssl rand -hex 32\``,
    ),
  ADMIN_USERNAME: env.optionalString(),
  ADMIN_PASSWORD: env.optionalString(),
  /** Failed logins allowed per username from one client address within the window. */
  LOGIN_MAX_FAILURES: env.integer({ default: 5, min: 1, max: 10_000 }),
  /** Failed logins allowed per username from all addresses together within the window. */
  LOGIN_MAX_FAILURES_PER_USERNAME: env.integer({ default: 100, min: 1, max: 1_000_000 }),
  /** Failed logins allowed per client address within the window (higher: offices share addresses). */
  LOGIN_MAX_FAILURES_PER_ADDRESS: env.integer({ default: 50, min: 1, max: 1_000_000 }),
  /**
   * Successful logins allowed per username within the window: each costs a password check, and
   * anyone can sign up, so one account logging in in a loop would fill the checks' queue.
   */
  LOGIN_MAX_SUCCESSES_PER_USERNAME: env.integer({ default: 60, min: 1, max: 1_000_000 }),
  LOGIN_FAILURE_WINDOW: env.duration({ default: '15m', min: '1s', max: '30d' }),
  /** Password hashes (argon2id, 19 MiB each) computed at once. */
  PASSWORD_HASH_CONCURRENCY: env.integer({ default: 4, min: 1, max: 64 }),
  /** Password hashes that may wait for one of those; more are answered 503 at once. */
  PASSWORD_HASH_QUEUE: env.integer({ default: 64, min: 0, max: 100_000 }),
  /** Self-registrations (`POST /v1/users` without an admin's token) allowed per client address within the window. */
  REGISTRATION_MAX_PER_ADDRESS: env.integer({ default: 30, min: 1, max: 1_000_000 }),
  REGISTRATION_WINDOW: env.duration({ default: '15m', min: '1s', max: '30d' }),
  /** Origins allowed to call the API from a browser (CORS), as browsers send them; `*` for any. */
  CORS_ORIGINS: env.originList({ default: ['*'] }),
  /** Behind reverse proxies: whose X-Forwarded-For to trust for the client address (see `trustProxySetting`). */
  TRUST_PROXY: env.string({ default: 'false' }).transform((raw, ctx) => {
    const setting = trustProxySetting(raw);
    if (setting === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: 'expected false, true, or comma-separated proxy addresses: IPs, CIDRs, loopback, linklocal, uniquelocal',
      });
      return z.NEVER;
    }
    return setting;
  }),
};

const PROXY_PRESETS = new Set(['loopback', 'linklocal', 'uniquelocal']);

function isProxyAddress(entry: string): boolean {
  if (PROXY_PRESETS.has(entry)) return true;
  const [address = '', prefix, ...rest] = entry.split('/');
  const version = isIP(address);
  if (version === 0 || rest.length > 0) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (version === 4 ? 32 : 128));
}

/**
 * TRUST_PROXY as Fastify takes it. `false`: the client address is the peer's. A list of proxies
 * (behind an ingress, `uniquelocal` covers the cluster's private addresses): the address is the
 * nearest one in X-Forwarded-For that is not a trusted proxy, which a client cannot forge, since
 * what it writes there lies beyond its own address, unless that address is itself in the list (a
 * pod, or a client on a private network, with `uniquelocal`). `true` trusts every hop, so a client behind a
 * proxy that appends to X-Forwarded-For picks its own address (and dodges the per-address login
 * throttle): only for a proxy that replaces the header. `undefined` when not one of these.
 */
export function trustProxySetting(raw: string): boolean | string[] | undefined {
  const value = raw.trim();
  if (value === 'false') return false;
  if (value === 'true') return true;
  const entries = value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  return entries.length > 0 && entries.every(isProxyAddress) ? entries : undefined;
}

export function loadAuthConfig(source: NodeJS.ProcessEnv = process.env) {
  const raw = loadConfig(authEnv, source);
  if ((raw.ADMIN_USERNAME === undefined) !== (raw.ADMIN_PASSWORD === undefined)) {
    throw new ConfigError(['ADMIN_USERNAME and ADMIN_PASSWORD must be set together']);
  }
  if (raw.ADMIN_USERNAME !== undefined) {
    // The rules of every other username: the admin must be able to log in with it.
    const checked = usernameSchema.safeParse(raw.ADMIN_USERNAME);
    if (!checked.success) throw new ConfigError([`ADMIN_USERNAME: ${checked.error.issues[0]?.message}`]);
    // At least as long as every other password (a sign-up refuses one of a single character),
    // and short enough to log in with: a login refuses (400) one over 1,024 before checking it.
    const password = z
      .string()
      .min(8, 'password must be 8 to 1024 characters')
      .max(1024, 'password must be 8 to 1024 characters')
      .safeParse(raw.ADMIN_PASSWORD);
    if (!password.success) throw new ConfigError([`ADMIN_PASSWORD: ${password.error.issues[0]?.message}`]);
  }
  return Object.freeze({
    ...commonSettings(raw),
    port: raw.PORT,
    opsPort: raw.OPS_PORT,
    databaseUrl: raw.DATABASE_URL,
    databasePoolSize: raw.DATABASE_POOL_SIZE,
    accessTokenTtlSeconds: Math.max(1, Math.floor(raw.ACCESS_TOKEN_TTL / 1000)),
    issuer: raw.JWT_ISSUER,
    audience: raw.JWT_AUDIENCE,
    privateKeyPem: raw.JWT_PRIVATE_KEY,
    apiKeys: raw.AUTH_API_KEYS,
    admin:
      raw.ADMIN_USERNAME !== undefined && raw.ADMIN_PASSWORD !== undefined
        ? { username: raw.ADMIN_USERNAME, password: raw.ADMIN_PASSWORD }
        : undefined,
    loginMaxFailures: raw.LOGIN_MAX_FAILURES,
    loginMaxFailuresPerUsername: raw.LOGIN_MAX_FAILURES_PER_USERNAME,
    loginMaxFailuresPerAddress: raw.LOGIN_MAX_FAILURES_PER_ADDRESS,
    loginMaxSuccessesPerUsername: raw.LOGIN_MAX_SUCCESSES_PER_USERNAME,
    loginFailureWindowMs: raw.LOGIN_FAILURE_WINDOW,
    registrationMaxPerAddress: raw.REGISTRATION_MAX_PER_ADDRESS,
    registrationWindowMs: raw.REGISTRATION_WINDOW,
    passwordHashConcurrency: raw.PASSWORD_HASH_CONCURRENCY,
    passwordHashQueue: raw.PASSWORD_HASH_QUEUE,
    trustProxy: raw.TRUST_PROXY,
    corsOrigins: raw.CORS_ORIGINS,
  });
}

export type AuthConfig = ReturnType<typeof loadAuthConfig>;
