import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { postJson, type Stack, startStack, TEST_NATS_URL } from '@switchboard/testing';
import pg from 'pg';
import { type EventSink, type InfraPids, inPool, type MeasuredProcess, type System } from '../driver.js';
import type { Plan } from '../plan.js';
import { onCleanup, pidsListeningOn, trackChild } from '../processes.js';
import { type JsonFrame, JsonSocket } from './ws-client.js';

type Role = 'user' | 'agent';
export type UserSource = (role: Role) => Promise<{ token: string }>;

/** Users per role: connections share tokens (token checks cost the same; argon2 hashing at sign-up does not). */
export const USER_POOL = 8;
const CONNECT_CONCURRENCY = 256;

export interface SwitchboardEndpoints {
  wsUrls: readonly string[];
  users: UserSource;
  processes: readonly MeasuredProcess[];
  infraPids: () => Promise<InfraPids>;
  stop: () => Promise<void>;
  label: string;
  onWindowOpen?: () => void;
  beforeDisconnect?: () => Promise<void>;
}

/** Switchboard seen from its clients: the protocol of docs/protocol.md over `ws`. */
export function switchboardSystem(endpoints: SwitchboardEndpoints): System {
  let sockets: (JsonSocket | undefined)[] = [];
  let sessionIds: number[] = [];

  return {
    name: 'switchboard',
    label: endpoints.label,
    processes: endpoints.processes,
    infraPids: endpoints.infraPids,

    async connect(plan: Plan, sink: EventSink, onProgress?: (line: string) => void) {
      const customers = await Promise.all(Array.from({ length: Math.min(USER_POOL, plan.sessions) }, () => endpoints.users('user')));
      const agentCount = plan.connections - plan.sessions;
      const agents =
        agentCount > 0 ? await Promise.all(Array.from({ length: Math.min(USER_POOL, agentCount) }, () => endpoints.users('agent'))) : [];
      sockets = new Array(plan.connections);
      sessionIds = new Array(plan.sessions).fill(0);
      const sessionIndex = new Map<number, number>();

      const onFrame = (connection: number) => (frame: JsonFrame) => {
        switch (frame.type) {
          case 'new_message': {
            const message = frame.message as { client_msg_id: string; content: string; seq: number };
            sink.delivery(connection, message.client_msg_id, message.content, message.seq);
            return;
          }
          case 'message_ack':
            sink.ack(connection, frame.client_msg_id as string);
            return;
          case 'error':
            sink.error(connection, frame.client_msg_id as string | undefined, String(frame.code));
            return;
          default:
            return;
        }
      };

      const indexes = Array.from({ length: plan.connections }, (_, i) => i);
      let opened = 0;
      const started = performance.now();
      await inPool(indexes, CONNECT_CONCURRENCY, async (connection) => {
        const url = endpoints.wsUrls[connection % endpoints.wsUrls.length] ?? '';
        const socket = await JsonSocket.open(url, onFrame(connection), 'connected');
        socket.ws.on('close', (code) => {
          if (!socket.closing) sink.closed(connection, code);
        });
        const session = plan.sessionOf[connection] ?? 0;
        const isCustomer = plan.localOf[connection] === 0;
        const user = isCustomer ? customers[session % customers.length] : agents[connection % agents.length];
        if (!user) throw new Error('no user for a connection');
        await socket.request({ type: 'auth', token: user.token });
        sockets[connection] = socket;
        if (++opened % 2000 === 0) onProgress?.(`  ${opened}/${plan.connections} connections authenticated`);
      });
      onProgress?.(`  ${plan.connections} connections authenticated in ${((performance.now() - started) / 1000).toFixed(1)} s`);

      await inPool(
        plan.members.map((members, session) => ({ session, customer: members[0] ?? 0 })),
        CONNECT_CONCURRENCY,
        async ({ session, customer }) => {
          const reply = await (sockets[customer] as JsonSocket).request({ type: 'create_session', subject: `bench ${session}` });
          if (reply.type !== 'session_created') {
            // Against a deployment (--target), its limit of new sessions per customer applies.
            const hint = reply.code === 'rate_limited' ? ' (raise SESSION_CREATE_LIMIT on persistence for the bench)' : '';
            throw new Error(`create_session answered ${JSON.stringify(reply)}${hint}`);
          }
          const id = (reply.session as { id: number }).id;
          sessionIds[session] = id;
          sessionIndex.set(id, session);
        },
      );
      await inPool(indexes, CONNECT_CONCURRENCY, async (connection) => {
        const session = plan.sessionOf[connection] ?? 0;
        await (sockets[connection] as JsonSocket).request({ type: 'join_session', session_id: sessionIds[session] });
      });
      onProgress?.(`  ${plan.sessions} sessions created and joined in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    },

    send(connection, session, clientMsgId, content) {
      sockets[connection]?.send(
        `{"type":"send_message","session_id":${sessionIds[session]},"client_msg_id":"${clientMsgId}","content":${JSON.stringify(content)}}`,
      );
    },

    sessionKey: (session) => String(sessionIds[session]),
    ...(endpoints.onWindowOpen ? { onWindowOpen: endpoints.onWindowOpen } : {}),

    async disconnect() {
      await endpoints.beforeDisconnect?.();
      await inPool(sockets, 1024, async (socket) => {
        await socket?.close();
      });
      sockets = [];
    },

    stop: endpoints.stop,
  };
}

export interface LocalSwitchboardOptions {
  gateways: number;
  gatewayEnv?: Record<string, string>;
  persistenceEnv?: Record<string, string>;
  /** A NATS of the bench's own (scale-out, for per-connection figures); default: the machine's. */
  natsUrl?: string;
  natsPids?: () => number[];
}

/**
 * Environment of every gateway the bench starts: no per-connection rate limit in the way, no bound
 * on sockets per user (USER_POOL users share thousands of connections), quiet logs.
 */
export const BENCH_GATEWAY_ENV = { RATE_LIMIT_PER_SEC: '100000', MAX_CONNECTIONS_PER_USER: '0', LOG_LEVEL: 'warn' };

/** What `--profile` and `--heap-profile` ask for: CPU time or allocations. */
export type ProfileKind = 'cpu' | 'heap';

/**
 * When set (`--profile DIR`, `--heap-profile DIR`), gateways and persistence run under V8's CPU or
 * sampling heap profiler over the measurement window and write their profiles there.
 */
let profiling: { dir: string; kind: ProfileKind } | undefined;

export function setProfileDir(dir: string | undefined, kind: ProfileKind = 'cpu'): void {
  profiling = dir === undefined ? undefined : { dir, kind };
}

export const isProfiling = () => profiling !== undefined;

export const profileEnv = (service: string): Record<string, string> =>
  profiling
    ? {
        NODE_OPTIONS: `--import ${fileURLToPath(new URL('../profile-hook.js', import.meta.url))}`,
        BENCH_CPU_PROFILE_DIR: `${profiling.dir}/${service}`,
        BENCH_PROFILE_KIND: profiling.kind,
      }
    : {};

/**
 * The system as in production on this machine: auth, one persistence and N gateways as their
 * own processes, on the real PostgreSQL and NATS, with a fresh database and subject prefix.
 */
export async function startLocalSwitchboard(options: LocalSwitchboardOptions): Promise<{ system: System; stack: Stack }> {
  const stack = await startStack({
    gateways: options.gateways,
    env: { LOG_LEVEL: 'warn', ...(options.natsUrl ? { NATS_URL: options.natsUrl } : {}) },
    gatewayEnv: { ...BENCH_GATEWAY_ENV, ...profileEnv('gateway'), ...options.gatewayEnv },
    // Production's ack wait: the stack's 2 s (for fault tests) would redeliver under a backlog.
    persistenceEnv: { INBOUND_ACK_WAIT: '10s', ...profileEnv('persistence'), ...options.persistenceEnv },
  });
  for (const service of [stack.auth, ...stack.persistence, ...stack.gateways]) trackChild(service.child);
  const stop = onCleanup(() => stack.stop());
  const natsPids = options.natsPids?.() ?? pidsListeningOn('nats-server', Number(new URL(TEST_NATS_URL).port || 4222));
  let profilersStarted = false;
  const processes = (): MeasuredProcess[] =>
    [stack.auth, ...stack.persistence, ...stack.gateways].map((service, index) => ({
      name: service.name === 'gateway' ? `gateway-${index - 1 - stack.persistence.length}` : service.name,
      metricsUrl: service.opsUrl('/metrics'),
      pid: service.child.pid,
    }));
  const system = switchboardSystem({
    label: `Switchboard (${options.gateways} gateway${options.gateways === 1 ? '' : 's'})`,
    wsUrls: stack.gateways.map((_, index) => stack.wsUrl(index)),
    users: (role) => stack.user(role),
    processes: processes(),
    // NATS's pids are looked up now, not at each CPU reading: the lookup reads every socket of
    // the machine (about 24,000 under the target load), synchronously, and at the window's edges
    // it held the generator's event loop for tens of milliseconds, late sends and all.
    infraPids: async () => ({ nats: natsPids, postgres: await postgresBackendPids(stack.database.url) }),
    stop,
    // Under --profile or --heap-profile the profilers run from the first measurement window until the clients disconnect,
    // so neither the set-up nor the tear-down is in the profiles.
    ...(profiling
      ? {
          onWindowOpen: () => {
            if (profilersStarted) return;
            profilersStarted = true;
            signalProfilers([...stack.persistence, ...stack.gateways]);
          },
          beforeDisconnect: async () => {
            if (!profilersStarted) return;
            signalProfilers([...stack.persistence, ...stack.gateways]);
            await new Promise((resolve) => setTimeout(resolve, 1_000));
          },
        }
      : {}),
  });
  return { system, stack };
}

/** The first signal starts a service's profiler (see profile-hook.ts), the second writes the profile. */
export function signalProfilers(services: readonly { child: { kill(signal: NodeJS.Signals): boolean } }[]): void {
  for (const service of services) service.child.kill('SIGUSR2');
}

/**
 * The PostgreSQL server processes whose CPU a durable message costs: the backends serving one
 * database, and the server's WAL writer, checkpointer and background writer, which serve every
 * database but on the bench's machine write for the bench alone.
 */
/** The pids that are PostgreSQL processes on this machine. */
export function onlyPostgresProcesses(pids: readonly number[]): number[] {
  return pids.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres';
    } catch {
      return false;
    }
  });
}

export async function postgresBackendPids(databaseUrl: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  try {
    await client.connect();
    const name = new URL(databaseUrl).pathname.slice(1);
    const { rows } = await client.query<{ pid: number }>(
      `select pid from pg_stat_activity
       where (datname = $1 and pid <> pg_backend_pid()) or backend_type in ('walwriter', 'checkpointer', 'background writer')`,
      [name],
    );
    // Pids as the server sees them: in a container they are another namespace's, and on this
    // machine name other processes (or none). Only those that are PostgreSQL's here are counted.
    return onlyPostgresProcesses(rows.map((row) => row.pid));
  } catch {
    return [];
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface TargetOptions {
  wsUrls: readonly string[];
  authUrl: string;
  /** `username:password` of an admin, to create agents. */
  admin: string | undefined;
  metricsUrls: readonly string[];
}

/** Switchboard already running somewhere (`--target`): users are registered through the auth API. */
export function targetSwitchboard(options: TargetOptions): System {
  let counter = 0;
  let adminToken: Promise<string> | undefined;
  const tag = `bench${process.pid}x${Date.now().toString(36)}`;
  const post = (path: string, body: unknown, token?: string) => postJson(new URL(path, options.authUrl), body, token);
  const users: UserSource = async (role) => {
    const username = `${tag}-${role}-${++counter}`;
    const password = `${username}-password`;
    let token: string | undefined;
    if (role !== 'user') {
      if (!options.admin) throw new Error('--admin username:password is needed to create agents on a target');
      const [adminUser, ...rest] = options.admin.split(':');
      adminToken ??= post('/v1/token', { username: adminUser, password: rest.join(':') }).then((reply) => reply.access_token as string);
      token = await adminToken;
    }
    await post('/v1/users', { username, password, role }, token);
    const reply = await post('/v1/token', { username, password });
    return { token: reply.access_token as string };
  };
  return switchboardSystem({
    label: `Switchboard (target, ${options.wsUrls.length} gateway${options.wsUrls.length === 1 ? '' : 's'})`,
    wsUrls: options.wsUrls,
    users,
    processes: options.metricsUrls.map((url, index) => ({ name: `target-${index}`, metricsUrl: url })),
    infraPids: async () => ({}),
    stop: async () => undefined,
  });
}
