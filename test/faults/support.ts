/**
 * Shared pieces of the fault scenarios (`*.fault.test.ts` in this folder): sessions to load and
 * the end-of-run check against PostgreSQL. Metrics, slow inserts, a cuttable TCP proxy and a
 * private NATS server are in `@switchboard/testing`.
 */
import {
  type CheckReport,
  checkDelivery,
  formatReport,
  LoadClient,
  readStored,
  type ServiceProcess,
  type Stack,
  TestClient,
  withPgClient,
} from '@switchboard/testing';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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

export interface ConversationLoadOptions {
  /** Gateway URLs; clients alternate which one they try first. */
  urls: readonly string[];
  ratePerSec: number;
  customerAttemptTimeoutMs?: number;
  agentAttemptTimeoutMs?: number;
}

/**
 * The load most scenarios use: each session's customer writes in its own session, each agent in
 * all of them, and half of the clients start on each gateway.
 */
export function conversationLoad(
  sessions: readonly LoadSession[],
  agents: readonly { id: number; token: string }[],
  { urls, ratePerSec, customerAttemptTimeoutMs, agentAttemptTimeoutMs }: ConversationLoadOptions,
): LoadClient[] {
  const order = (index: number, flip: boolean) => ((index % 2 === 0) !== flip ? [...urls] : [...urls].reverse());
  return [
    ...sessions.map(
      (session, index) =>
        new LoadClient({
          name: `customer${index}`,
          urls: order(index, false),
          token: session.customer.token,
          userId: session.customer.id,
          join: [session.id],
          sendTo: [session.id],
          ratePerSec,
          ...(customerAttemptTimeoutMs === undefined ? {} : { attemptTimeoutMs: customerAttemptTimeoutMs }),
        }),
    ),
    ...agents.map(
      (agent, index) =>
        new LoadClient({
          name: `agent${index}`,
          urls: order(index, true),
          token: agent.token,
          userId: agent.id,
          join: sessions.map((session) => session.id),
          sendTo: sessions.map((session) => session.id),
          ratePerSec,
          ...(agentAttemptTimeoutMs === undefined ? {} : { attemptTimeoutMs: agentAttemptTimeoutMs }),
        }),
    ),
  ];
}

export async function startAll(clients: readonly LoadClient[], batch = 100, timeoutMs = 60_000): Promise<void> {
  for (let i = 0; i < clients.length; i += batch) await Promise.all(clients.slice(i, i + batch).map((client) => client.start(timeoutMs)));
}

export interface VerifyOptions {
  /** Database to read (default the stack's). */
  databaseUrl: string;
  /** How long members get to catch up with what is stored (default 30 s). */
  catchUpMs?: number;
}

/**
 * The end of every scenario: waits until every member has received everything stored in its
 * sessions (re-reading until the database stops changing), then runs the checker.
 */
export async function verify(clients: readonly LoadClient[], { databaseUrl, catchUpMs = 30_000 }: VerifyOptions): Promise<CheckReport> {
  const records = LoadClient.records(clients);
  const sessionIds = [...new Set([...records.attempts.map((a) => a.sessionId), ...records.transcripts.map((t) => t.sessionId)])];
  const deadline = Date.now() + catchUpMs;
  let snapshot = await readStored(databaseUrl, sessionIds);
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
    if ((settled && caughtUp.every(Boolean)) || Date.now() > deadline) break;
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
