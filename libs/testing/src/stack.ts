import { postJson } from './auth-api.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { deleteInboundStream, TEST_NATS_URL } from './nats-streams.js';
import { type ServiceProcess, startService, uniqueSubjectPrefix } from './service-process.js';

export interface Stack {
  readonly database: TestDatabase;
  readonly prefix: string;
  readonly auth: ServiceProcess;
  readonly persistence: ServiceProcess[];
  readonly gateways: ServiceProcess[];
  /** Environment shared by every service of this stack. */
  readonly env: Record<string, string>;
  /** The WebSocket URL of gateway `index`. */
  wsUrl(index?: number): string;
  startPersistence(env?: Record<string, string>): Promise<ServiceProcess>;
  startGateway(env?: Record<string, string>): Promise<ServiceProcess>;
  /** Creates a user (agents and admins through the bootstrap admin) and returns a token for it. */
  user(role: 'user' | 'agent' | 'admin', username?: string): Promise<{ id: number; token: string; username: string }>;
  stop(): Promise<void>;
}

export interface StackOptions {
  gateways?: number;
  persistence?: number;
  /** Extra environment for every service. */
  env?: Record<string, string>;
  gatewayEnv?: Record<string, string>;
  persistenceEnv?: Record<string, string>;
}

const ADMIN = { username: 'stack-admin', password: 'stack-admin-password' };

/** The password `Stack.user` gives a user it creates: a test logs that user in again with it. */
export const passwordOf = (username: string): string => `${username}-password`;
let userCounter = 0;

/**
 * The whole system as in production, on the real PostgreSQL and NATS, in a namespace of its own;
 * but persistence's inbound ack wait is 2 s (deployed: 10 s), so that what a dead replica held
 * comes back within a test's time.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const database = await createTestDatabase('stack');
  const prefix = uniqueSubjectPrefix();
  const env: Record<string, string> = {
    // Tests and the bench sign up many customers from 127.0.0.1, and create many sessions each.
    REGISTRATION_MAX_PER_ADDRESS: '1000000',
    SESSION_CREATE_LIMIT: '1000000',
    DATABASE_URL: database.url,
    NATS_URL: TEST_NATS_URL,
    NATS_SUBJECT_PREFIX: prefix,
    ...options.env,
  };
  const persistence: ServiceProcess[] = [];
  const gateways: ServiceProcess[] = [];
  const auth = await startService('auth', { env: { ...env, ADMIN_USERNAME: ADMIN.username, ADMIN_PASSWORD: ADMIN.password } }).catch(
    async (error: unknown) => {
      await database.drop().catch(() => undefined);
      throw error;
    },
  );
  // One login for all callers, concurrent ones included: the throttle counts logins in flight.
  let adminToken: Promise<string> | undefined;

  const post = (path: string, body: unknown, token?: string) => postJson(auth.url(path), body, token);

  const stack: Stack = {
    database,
    prefix,
    auth,
    persistence,
    gateways,
    env,
    wsUrl: (index = 0) => {
      const gateway = gateways[index];
      if (!gateway) throw new Error(`no gateway ${index}`);
      return `ws://127.0.0.1:${gateway.port}/ws`;
    },
    async startPersistence(extra = {}) {
      const service = await startService('persistence', { env: { ...env, INBOUND_ACK_WAIT: '2s', ...options.persistenceEnv, ...extra } });
      persistence.push(service);
      return service;
    },
    async startGateway(extra = {}) {
      const service = await startService('gateway', { env: { ...env, DRAIN_SECONDS: '0', ...options.gatewayEnv, ...extra } });
      gateways.push(service);
      return service;
    },
    async user(role, username = `${role}-${process.pid}-${++userCounter}`) {
      const password = passwordOf(username);
      if (role !== 'user') adminToken ??= post('/v1/token', ADMIN).then((reply) => reply.access_token as string);
      const created = await post('/v1/users', { username, password, role }, role === 'user' ? undefined : await adminToken);
      const { access_token: token } = await post('/v1/token', { username, password });
      return { id: created.id as number, token: token as string, username };
    },
    async stop() {
      await Promise.all([...gateways, ...persistence, auth].map((service) => service.stop()));
      await Promise.all([database.drop(), deleteInboundStream(env.NATS_URL, prefix)]);
    },
  };

  try {
    for (let i = 0; i < (options.persistence ?? 1); i++) await stack.startPersistence();
    await Promise.all(Array.from({ length: options.gateways ?? 1 }, () => stack.startGateway()));
  } catch (error) {
    await stack.stop().catch(() => undefined);
    throw error;
  }
  return stack;
}
