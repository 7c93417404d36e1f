/**
 * Shared pieces of the fault scenarios (`*.fault.test.ts` in this folder): the stack and clients
 * a scenario starts, sessions and agents to load, and the end-of-run check against PostgreSQL.
 * Metrics, slow inserts, a cuttable TCP proxy and a private NATS server are in `@switchboard/testing`.
 */

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import {
  type CheckReport,
  checkDelivery,
  formatReport,
  LoadClient,
  readStored,
  type ServiceProcess,
  type Stack,
  type StackOptions,
  startStack,
  TEST_DATABASE_ADMIN_URL,
  TestClient,
  TestClients,
  withPgClient,
} from '@switchboard/testing';
import type pg from 'pg';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What a scenario file starts: its stack, its load clients and its test sockets. `close()` (after
 * each test or after all of them) closes the clients and sockets, then stops the stack.
 */
export class Scenario {
  readonly clients: LoadClient[] = [];
  readonly sockets = new TestClients();
  private stack: Stack | undefined;

  /** Starts the stack that `close()` stops. */
  async start(options: StackOptions): Promise<Stack> {
    this.stack = await startStack(options);
    return this.stack;
  }

  async close(): Promise<void> {
    // 200 at a time, so that thousands of sockets do not all close at once.
    const clients = this.clients.splice(0);
    for (let i = 0; i < clients.length; i += 200) await Promise.all(clients.slice(i, i + 200).map((client) => client.close()));
    await this.sockets.closeAll();
    await this.stack?.stop();
    this.stack = undefined;
  }
}

export interface LoadSession {
  id: number;
  customer: { id: number; token: string };
}

/** Sessions, each created by a customer of its own. */
export async function createSessions(stack: Stack, count: number, perCustomer = 1): Promise<LoadSession[]> {
  const sessions: LoadSession[] = [];
  for (let made = 0; made < count; ) {
    const customer = await stack.user('user');
    const client = await TestClient.connect(stack.wsUrl(0));
    try {
      await client.request({ type: 'auth', token: customer.token });
      for (let i = 0; i < perCustomer && made < count; i++, made++) {
        const reply = await client.request({ type: 'create_session' });
        if (reply.type !== 'session_created') throw new Error(`create_session answered ${JSON.stringify(reply)}`);
        sessions.push({ id: (reply.session as { id: number }).id, customer });
      }
    } finally {
      await client.close();
    }
  }
  return sessions;
}

/** Agents, created all at once. */
export async function createAgents(stack: Stack, count: number): Promise<{ id: number; token: string }[]> {
  return Promise.all(Array.from({ length: count }, () => stack.user('agent')));
}

export interface ConversationLoadOptions {
  /** Sessions to create, each by a customer of its own who writes in it. */
  sessions: number;
  /** Agents to create, each writing in every session. */
  agents: number;
  /**
   * Gateway URLs (default every gateway's); clients alternate which one they try first. Or, for a
   * scenario that places its clients itself, the URLs a customer's or an agent's client tries, in order.
   */
  urls?: readonly string[] | ((role: 'customer' | 'agent', index: number) => readonly string[]);
  ratePerSec: number;
  /** How long customers' and agents' clients wait for an ack before sending again (default LoadClient's). */
  attemptTimeoutMs?: { customer?: number; agent?: number };
}

/**
 * The load most scenarios use: creates the sessions, then the agents; each session's customer
 * writes in its own session, each agent in all of them, and half of the clients start on each
 * gateway. The clients are not started.
 */
export async function conversationLoad(
  stack: Stack,
  { sessions: sessionCount, agents: agentCount, urls, ratePerSec, attemptTimeoutMs = {} }: ConversationLoadOptions,
): Promise<LoadClient[]> {
  const sessions = await createSessions(stack, sessionCount);
  const agents = await createAgents(stack, agentCount);
  const gateways = urls ?? stack.gateways.map((_, index) => stack.wsUrl(index));
  const order = (role: 'customer' | 'agent', index: number) => {
    if (typeof gateways === 'function') return [...gateways(role, index)];
    return (index % 2 === 0) === (role === 'customer') ? [...gateways] : [...gateways].reverse();
  };
  return [
    ...sessions.map(
      (session, index) =>
        new LoadClient({
          name: `customer${index}`,
          urls: order('customer', index),
          token: session.customer.token,
          userId: session.customer.id,
          join: [session.id],
          sendTo: [session.id],
          ratePerSec,
          ...(attemptTimeoutMs.customer === undefined ? {} : { attemptTimeoutMs: attemptTimeoutMs.customer }),
        }),
    ),
    ...agents.map(
      (agent, index) =>
        new LoadClient({
          name: `agent${index}`,
          urls: order('agent', index),
          token: agent.token,
          userId: agent.id,
          join: sessions.map((session) => session.id),
          sendTo: sessions.map((session) => session.id),
          ratePerSec,
          ...(attemptTimeoutMs.agent === undefined ? {} : { attemptTimeoutMs: attemptTimeoutMs.agent }),
        }),
    ),
  ];
}

/** Connects every client (all at once), then sets them all sending. */
export async function startLoad(clients: readonly LoadClient[]): Promise<void> {
  await Promise.all(clients.map((client) => client.start()));
  for (const client of clients) client.startSending();
}

/** Connects the clients `batch` at a time (for thousands of them); they do not send yet. */
export async function startAll(clients: readonly LoadClient[], batch = 100, timeoutMs = 60_000): Promise<void> {
  for (let i = 0; i < clients.length; i += batch) await Promise.all(clients.slice(i, i + batch).map((client) => client.start(timeoutMs)));
}

export interface VerifyOptions {
  /** Database to read (default the stack's). */
  databaseUrl: string;
  /** How long members get to catch up with what is stored (default 30 s). */
  catchUpMs?: number;
  /**
   * How long to wait once members have caught up, before checking that they still are (default
   * 2.5 s: the stacks' 2 s ack wait, and a margin), so that what a fault sends late, such as a
   * dead replica's batch redelivered and confirmed again, reaches the members before the check
   * rather than after it. Rows stored meanwhile start the wait again.
   */
  quietMs?: number;
}

/**
 * The end of every scenario: waits until every member has received everything stored in its
 * sessions, then `quietMs` more with nothing new stored, then runs the checker.
 */
export async function verify(
  clients: readonly LoadClient[],
  { databaseUrl, catchUpMs = 30_000, quietMs = 2_500 }: VerifyOptions,
): Promise<CheckReport> {
  const records = LoadClient.records(clients);
  const sessionIds = [...new Set([...records.attempts.map((a) => a.sessionId), ...records.transcripts.map((t) => t.sessionId)])];
  const deadline = Date.now() + catchUpMs;
  let snapshot = await readStored(databaseUrl, sessionIds);
  let quiet = false;
  for (;;) {
    const newest = new Map<number, number>();
    for (const row of snapshot.stored) newest.set(row.sessionId, Math.max(newest.get(row.sessionId) ?? 0, row.seq));
    const caughtUp = await Promise.all(
      clients.map((client) =>
        client.waitCaughtUp(newest, Math.max(0, deadline - Date.now())).then(
          () => true,
          () => false,
        ),
      ),
    );
    const again = await readStored(databaseUrl, sessionIds);
    const settled = again.stored.length === snapshot.stored.length;
    snapshot = again;
    if (Date.now() > deadline) break;
    if (!(settled && caughtUp.every(Boolean))) {
      quiet = false;
      continue;
    }
    // Caught up twice in a row, with the quiet period between: done.
    if (quiet) break;
    await sleep(quietMs);
    quiet = true;
  }
  return checkDelivery({ ...LoadClient.records(clients), ...snapshot });
}

/** Fails with the checker's findings unless every counter is zero. */
export function assertClean(report: CheckReport): void {
  if (!report.ok) throw new Error(`delivery check failed:\n${formatReport(report)}`);
}

/** Every message each client attempted was acked in the end. */
export function assertAllAcked(clients: readonly LoadClient[]): void {
  const failed = clients.flatMap((client) => client.failed.map((failure) => `${client.name}: ${failure.clientMsgId} ${failure.reason}`));
  if (failed.length > 0) throw new Error(`${failed.length} messages never acked:\n  ${failed.slice(0, 20).join('\n  ')}`);
}

export interface CheckOptions extends VerifyOptions {
  /** Names the scenario in the summary line. */
  label: string;
  /** `Date.now()` when the scenario started, for the summary's duration. */
  startedAt: number;
  /** The scenario's own measurements, logged after the summary. */
  details?: string[];
}

/**
 * `verify`, then logs the summary line and fails unless the check is clean and every message
 * the clients attempted was acked.
 */
export async function verifyClean(
  clients: readonly LoadClient[],
  { label, startedAt, details = [], ...options }: CheckOptions,
): Promise<CheckReport> {
  const report = await verify(clients, options);
  console.log(summary(label, report, clients, startedAt), ...details);
  assertClean(report);
  assertAllAcked(clients);
  return report;
}

export function summary(label: string, report: CheckReport, clients: readonly LoadClient[], startedAt: number): string {
  const resends = clients.reduce((sum, client) => sum + client.resends, 0);
  const errors = new Map<string, number>();
  for (const client of clients) for (const [code, count] of client.errors) errors.set(code, (errors.get(code) ?? 0) + count);
  const codes = [...errors].map(([code, count]) => `${code}:${count}`).join(',') || 'none';
  return `[${label}] ${formatReport(report).split('\n')[0]} | resends=${resends} errors=${codes} | ${((Date.now() - startedAt) / 1000).toFixed(1)}s`;
}

export async function deadLetterCount(databaseUrl: string): Promise<number> {
  return withPgClient(databaseUrl, async (db) => Number((await db.query('select count(*) as n from dead_letters')).rows[0]?.n ?? 0));
}

/** HTTP status of an ops endpoint, 0 when it does not answer. */
export async function opsStatus(service: ServiceProcess, path: '/healthz' | '/readyz'): Promise<number> {
  return fetch(service.opsUrl(path), { signal: AbortSignal.timeout(2_000) }).then(
    (response) => response.status,
    () => 0,
  );
}

export function isRunning(service: ServiceProcess): boolean {
  return service.child.exitCode === null && service.child.signalCode === null;
}

/**
 * The local ports of a process's established TCP connections to `remotePort`, read from /proc
 * (Linux): its sockets' inodes, found in the TCP tables. Empty once the process has gone.
 */
function tcpPortsOf(pid: number, remotePort: number): number[] {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    try {
      const socket = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (socket?.[1]) inodes.add(socket[1]);
    } catch {
      // Closed meanwhile.
    }
  }
  const port = (address: string) => Number.parseInt(address.split(':').at(-1) ?? '', 16);
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const [, local, remote, state, , , , , , inode] = line.trim().split(/\s+/);
      // 01: established.
      if (local && remote && inode && state === '01' && inodes.has(inode) && port(remote) === remotePort) ports.push(port(local));
    }
  }
  return ports;
}

/** A replica found storing a batch, and the id of the transaction its statement writes in. */
export interface BatchSighting {
  service: ServiceProcess;
  xid: string;
}

/**
 * Waits, up to `timeoutMs`, until one of `services` runs persistence's statement that stores a
 * batch (named in its text: PostgreSQL shows only its first kilobyte) and has written (its
 * transaction has an id), as PostgreSQL sees its connections to `databasePort`. `undefined` when
 * none did. Fails when a replica's connections cannot be found there at all (PostgreSQL reached
 * through a forwarder sees other ports), rather than finding nothing for ever.
 */
export async function insideBatch(
  db: pg.Client,
  services: readonly ServiceProcess[],
  { timeoutMs = 1_000, databasePort = Number(new URL(TEST_DATABASE_ADMIN_URL).port || 5432) } = {},
): Promise<BatchSighting | undefined> {
  const until = Date.now() + timeoutMs;
  let seenAny = false;
  while (Date.now() < until) {
    const running = services.filter((service) => isRunning(service) && service.child.pid !== undefined);
    const ports = running.map((service) => tcpPortsOf(service.child.pid ?? 0, databasePort));
    const { rows } = await db.query<{ port: number; active: boolean; xid: string | null }>(
      `select client_port as port, state = 'active' and query like '/* prepared store_batch */%' as active, backend_xid::text as xid
       from pg_stat_activity where client_port = any($1::int[])`,
      [ports.flat()],
    );
    seenAny ||= rows.length > 0;
    for (const row of rows) {
      if (!row.active || row.xid === null) continue;
      const service = running.find((_, index) => ports[index]?.includes(row.port));
      if (service) return { service, xid: row.xid };
    }
    await sleep(2);
  }
  if (!seenAny)
    throw new Error("none of the replicas' PostgreSQL connections is in pg_stat_activity: is PostgreSQL reached through a forwarder?");
  return undefined;
}

/** What became of a transaction, once it has ended: `committed` or `aborted` (`in progress` until then, up to `timeoutMs`). */
export async function transactionOutcome(db: pg.Client, xid: string, timeoutMs = 5_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await db.query<{ status: string }>('select pg_xact_status($1::xid8) as status', [xid]);
    const status = rows[0]?.status ?? 'unknown';
    if (status !== 'in progress' || Date.now() > until) return status;
    await sleep(5);
  }
}
