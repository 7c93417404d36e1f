import { commonEnv, commonSettings, env, loadConfig } from '@switchboard/config';
import { MAX_AUTH_FRAME_BYTES } from '@switchboard/protocol';

export const DEFAULT_PORT = 2346;
export const DEFAULT_OPS_PORT = 9403;

const gatewayEnv = {
  ...commonEnv,
  PORT: env.port(DEFAULT_PORT),
  OPS_PORT: env.port(DEFAULT_OPS_PORT),
  JWT_ISSUER: env.string({ default: 'switchboard', exact: true }),
  JWT_AUDIENCE: env.string({ default: 'switchboard', exact: true }),
  /** Time a new socket has to send `auth` before it is closed with 4001. */
  AUTH_TIMEOUT_MS: env.integer({ default: 10_000, min: 100, max: 600_000 }),
  /** Longest `content`, in Unicode code points. */
  MAX_CONTENT_CHARS: env.integer({ default: 4_000, min: 1, max: 1_000_000 }),
  /**
   * Larger frames get `payload_too_large`; frames over 16 times this close the socket with 1009.
   * At least the longest `auth` frame: below it, a gateway that reported ready served nobody.
   */
  MAX_FRAME_BYTES: env.integer({ default: 65_536, min: MAX_AUTH_FRAME_BYTES, max: 16 * 1024 * 1024 }),
  /** Frames per second per connection; bursts of twice as many are allowed. */
  RATE_LIMIT_PER_SEC: env.integer({ default: 20, min: 1, max: 100_000 }),
  /** Comma-separated origins allowed to open a WebSocket; unset or `*` accepts any. */
  ALLOWED_ORIGINS: env.originList(),
  /** WebSocket ping interval; a socket silent for two intervals is dropped. */
  HEARTBEAT_INTERVAL_MS: env.integer({ default: 25_000, min: 100, max: 600_000 }),
  /** How long a send waits for persistence to confirm before the client gets `unavailable`. */
  SEND_TIMEOUT_MS: env.integer({ default: 10_000, min: 100, max: 600_000 }),
  /** A socket whose unsent bytes stay above this for SLOW_CLIENT_GRACE_MS is closed with 1013. */
  MAX_BUFFERED_BYTES: env.integer({ default: 1024 * 1024, min: 1024, max: 1024 * 1024 * 1024 }),
  SLOW_CLIENT_GRACE_MS: env.integer({ default: 5_000, min: 0, max: 600_000 }),
  /** Sessions one socket may be joined to at once: each costs the gateway a NATS subscription and memory. */
  MAX_SESSIONS_PER_CONNECTION: env.integer({ default: 1_000, min: 1, max: 1_000_000 }),
  /**
   * Authenticated sockets one user may hold on this gateway; an `auth` for one more gets
   * `rate_limited` and the socket is closed with 1008. 0: no bound.
   */
  MAX_CONNECTIONS_PER_USER: env.integer({ default: 20, min: 0, max: 1_000_000 }),
  /** How long a session's delivery waits for a missing seq before fetching it from persistence. */
  GAP_WAIT_MS: env.integer({ default: 100, min: 0, max: 60_000 }),
  /** Where browsers reach the auth API, for the demo page; unset: the gateway's host on port 2347. */
  PUBLIC_AUTH_URL: env.optionalUrl({ protocols: ['http', 'https'], paths: true }),
  /**
   * On SIGTERM, sockets are closed with 1012 spread over this many seconds. At most 20: the stop
   * takes up to 8 s more (sends in flight, close handshakes, the NATS drains while NATS is out of
   * reach), and a process must exit within 30 s of its SIGTERM.
   */
  DRAIN_SECONDS: env.integer({ default: 5, min: 0, max: 20 }),
  /**
   * A socket open this long (give or take a tenth, at random) is closed with 1012, and its client
   * reconnects, perhaps to another gateway: so sockets spread over gateways added since. 0: never.
   */
  MAX_CONNECTION_AGE_S: env.integer({ default: 0, min: 0, max: 30 * 24 * 3600 }),
};

/** Auth's default port (contract §1). */
export const DEFAULT_PUBLIC_AUTH_PORT: number = 2347;

export function loadGatewayConfig(source: NodeJS.ProcessEnv = process.env) {
  const raw = loadConfig(gatewayEnv, source);
  return Object.freeze({
    ...commonSettings(raw),
    port: raw.PORT,
    opsPort: raw.OPS_PORT,
    issuer: raw.JWT_ISSUER,
    audience: raw.JWT_AUDIENCE,
    authTimeoutMs: raw.AUTH_TIMEOUT_MS,
    maxContentChars: raw.MAX_CONTENT_CHARS,
    maxFrameBytes: raw.MAX_FRAME_BYTES,
    rateLimitPerSec: raw.RATE_LIMIT_PER_SEC,
    allowedOrigins: Object.freeze([...raw.ALLOWED_ORIGINS]),
    heartbeatIntervalMs: raw.HEARTBEAT_INTERVAL_MS,
    sendTimeoutMs: raw.SEND_TIMEOUT_MS,
    maxBufferedBytes: raw.MAX_BUFFERED_BYTES,
    slowClientGraceMs: raw.SLOW_CLIENT_GRACE_MS,
    maxSessionsPerConnection: raw.MAX_SESSIONS_PER_CONNECTION,
    maxConnectionsPerUser: raw.MAX_CONNECTIONS_PER_USER,
    gapWaitMs: raw.GAP_WAIT_MS,
    drainSeconds: raw.DRAIN_SECONDS,
    maxConnectionAgeMs: raw.MAX_CONNECTION_AGE_S * 1000,
    publicAuthUrl: raw.PUBLIC_AUTH_URL,
    /** Without PUBLIC_AUTH_URL, the demo page looks for the auth API on its own host at this port. */
    publicAuthPort: DEFAULT_PUBLIC_AUTH_PORT,
  });
}

export type GatewayConfig = ReturnType<typeof loadGatewayConfig>;
