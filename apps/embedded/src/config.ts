import { databaseEnv, env, loadConfig } from '@switchboard/config';

const embeddedEnv = {
  /** Where the embedded PostgreSQL keeps its files. */
  DATA_DIR: env.string({ default: './data' }),
  /** Set to use a real NATS instead of the in-process bus. */
  NATS_URL: env.optionalString(),
  /** Set to use a real PostgreSQL instead of the embedded one. */
  DATABASE_URL: env.optionalString(),
  /** With `DATABASE_URL`: the connections of the pool auth and persistence share (10 by default). */
  DATABASE_POOL_SIZE: databaseEnv.DATABASE_POOL_SIZE,
  /**
   * Loopback by default: this mode creates an admin and an agent with passwords everyone knows.
   * `HOST=0.0.0.0` opens it to the network.
   */
  HOST: env.string({ default: '127.0.0.1' }),
  /** The gateway: WebSocket and demo page. */
  PORT: env.port(2346),
  AUTH_PORT: env.port(2347),
  AUTH_OPS_PORT: env.port(9401),
  PERSISTENCE_OPS_PORT: env.port(9402),
  OPS_PORT: env.port(9403),
  LOG_LEVEL: env.logLevel(),
  ADMIN_USERNAME: env.string({ default: 'admin' }),
  ADMIN_PASSWORD: env.string({ default: 'admin-password' }),
  /** An agent created at first start so the demo's agent view can be tried at once; empty to skip. */
  DEMO_AGENT_USERNAME: env.string({ default: 'agent', emptyAllowed: true }),
  DEMO_AGENT_PASSWORD: env.string({ default: 'agent-password' }),
};

export function loadEmbeddedConfig(source: NodeJS.ProcessEnv = process.env) {
  return loadConfig(embeddedEnv, source);
}

export type EmbeddedConfig = ReturnType<typeof loadEmbeddedConfig>;
