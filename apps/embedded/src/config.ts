import { passwordSchema, usernameSchema } from '@switchboard/auth';
import { ConfigError, env, loadConfig } from '@switchboard/config';
import { MIN_DATABASE_POOL_SIZE } from '@switchboard/persistence';

const embeddedEnv = {
  /** Where the embedded PostgreSQL keeps its files. */
  DATA_DIR: env.string({ default: './data' }),
  /** Set to use a real NATS instead of the in-process bus. */
  NATS_URL: env.optionalString(),
  /** Set to use a real PostgreSQL instead of the embedded one. */
  DATABASE_URL: env.optionalString(),
  /**
   * With `DATABASE_URL`: the connections of each of auth's and persistence's pools (10 by default;
   * at least persistence's minimum, refused here before anything starts).
   */
  DATABASE_POOL_SIZE: env.integer({ default: 10, min: MIN_DATABASE_POOL_SIZE, max: 1000 }),
  /**
   * The gateway's drain (its own variable, read here for its bound): at most 5 s in this mode,
   * where the gateway's stop (the drain and about 3 s more), then persistence's and auth's side
   * by side (up to 12 s for a batch in hand), then the database's close (up to 6 s) share the one
   * 30 s a process has after SIGTERM. The gateway alone takes up to 20.
   */
  DRAIN_SECONDS: env.integer({ default: 5, min: 0, max: 5 }),
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
  ADMIN_USERNAME: env.optionalString(),
  ADMIN_PASSWORD: env.optionalString(),
  /** An agent created at first start so the demo's agent view can be tried at once; empty to skip. */
  DEMO_AGENT_USERNAME: env.string({ default: 'agent', emptyAllowed: true }),
  DEMO_AGENT_PASSWORD: env.optionalString(),
};

/** The accounts the embedded database gets unless told otherwise: their passwords are in the docs. */
export const DEMO_ACCOUNTS = {
  admin: { username: 'admin', password: 'admin-password' },
  agent: { username: 'agent', password: 'agent-password' },
} as const;

export interface Credentials {
  username: string;
  password: string;
}

/**
 * The one process's settings. The accounts with known passwords are made only in the embedded
 * database, which is for trying Switchboard out: on a PostgreSQL server (`DATABASE_URL`), which may
 * be a production one, there is an admin only when both `ADMIN_*` are set, and a demo agent only
 * when both `DEMO_AGENT_*` are set too.
 */
export function loadEmbeddedConfig(source: NodeJS.ProcessEnv = process.env) {
  const { ADMIN_USERNAME, ADMIN_PASSWORD, DEMO_AGENT_USERNAME, DEMO_AGENT_PASSWORD, ...config } = loadConfig(embeddedEnv, source);
  const demo = config.DATABASE_URL === undefined;
  let admin: Credentials | undefined;
  if (demo) admin = { username: ADMIN_USERNAME ?? DEMO_ACCOUNTS.admin.username, password: ADMIN_PASSWORD ?? DEMO_ACCOUNTS.admin.password };
  else if ((ADMIN_USERNAME === undefined) !== (ADMIN_PASSWORD === undefined))
    throw new ConfigError(['with DATABASE_URL, ADMIN_USERNAME and ADMIN_PASSWORD must be set together']);
  else if (ADMIN_USERNAME !== undefined && ADMIN_PASSWORD !== undefined) admin = { username: ADMIN_USERNAME, password: ADMIN_PASSWORD };
  let demoAgent: Credentials | undefined;
  if (demo) demoAgent = { username: DEMO_AGENT_USERNAME, password: DEMO_AGENT_PASSWORD ?? DEMO_ACCOUNTS.agent.password };
  else if (source.DEMO_AGENT_USERNAME !== undefined && DEMO_AGENT_PASSWORD !== undefined)
    demoAgent = { username: DEMO_AGENT_USERNAME, password: DEMO_AGENT_PASSWORD };
  if (demoAgent?.username === '') demoAgent = undefined;
  if (demoAgent !== undefined && admin === undefined)
    throw new ConfigError(['DEMO_AGENT_USERNAME needs ADMIN_USERNAME and ADMIN_PASSWORD: the admin creates the agent']);
  // Checked now as the auth API will check them: before, a short password was taken, the agent's
  // creation was refused (400) after the start, and the banner left the agent out without a word.
  if (demoAgent !== undefined) {
    for (const [name, schema, value] of [
      ['DEMO_AGENT_USERNAME', usernameSchema, demoAgent.username],
      ['DEMO_AGENT_PASSWORD', passwordSchema, demoAgent.password],
    ] as const) {
      const checked = schema.safeParse(value);
      if (!checked.success) throw new ConfigError([`${name}: ${checked.error.issues[0]?.message}`]);
    }
  }
  return { ...config, admin, demoAgent };
}

export type EmbeddedConfig = ReturnType<typeof loadEmbeddedConfig>;
