import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  lockWaits,
  REPO_ROOT,
  type ServiceProcess,
  type Stack,
  sendReliably,
  startStack,
  TEST_NATS_URL,
  TestClient,
  TestClients,
  waitFor,
} from '@switchboard/testing';
import { connect, type EndpointStats, RequestStrategy } from 'nats';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadGatewayConfig } from '../src/config.js';

let stack: Stack;
const clients = new TestClients();

beforeAll(async () => {
  stack = await startStack({ gateways: 1, gatewayEnv: { RATE_LIMIT_PER_SEC: '1000' } });
});

afterAll(async () => {
  await clients.closeAll();
  await stack?.stop();
});

/** Until a statement on the stack's database waits for a lock (persistence's insert, held up by a test). */
const insertWaitsForLock = () => waitFor(async () => (await lockWaits(stack.database.url)) > 0, 10_000, 'the insert to wait for the lock');

/** Until the gateway's readiness fails: its drain has begun. */
const draining = (gateway: ServiceProcess) =>
  waitFor(
    async () =>
      (await fetch(gateway.opsUrl('/readyz')).then(
        (response) => response.status,
        () => 0,
      )) !== 200,
    10_000,
    'the drain',
  );

describe('graceful drain', () => {
  it('fails readiness first, refuses new upgrades, closes sockets with 1012 over DRAIN_SECONDS and exits 0', async () => {
    const gateway = await stack.startGateway({ DRAIN_SECONDS: '2' });
    const url = `ws://127.0.0.1:${gateway.port}/ws`;
    const user = await stack.user('user');
    const sockets = await Promise.all([1, 2, 3, 4].map(() => clients.authenticated(url, user.token)));
    const closedAt: number[] = [];
    for (const socket of sockets) void socket.closed.then(() => closedAt.push(Date.now()));

    const signalledAt = Date.now();
    gateway.child.kill('SIGTERM');
    let unreadyAt: number | undefined;
    while (unreadyAt === undefined && Date.now() - signalledAt < 5_000) {
      const status = await fetch(gateway.opsUrl('/readyz'))
        .then((response) => response.status)
        .catch(() => 0);
      if (status === 503) unreadyAt = Date.now();
    }
    expect(unreadyAt).toBeDefined();
    await expect(TestClient.connect(url)).rejects.toThrow(/503/);

    const codes = await Promise.all(sockets.map((socket) => socket.closed));
    expect(codes).toEqual([1012, 1012, 1012, 1012]);
    expect(Math.min(...closedAt)).toBeGreaterThanOrEqual(unreadyAt ?? Number.POSITIVE_INFINITY);
    // Spread out, not all at once.
    expect(Math.max(...closedAt) - Math.min(...closedAt)).toBeGreaterThanOrEqual(1_000);
    expect(await gateway.exited).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(30_000);
  });

  it('answers the send it has published before closing with 1012, and the queued ones and those arriving meanwhile with unavailable', async () => {
    const gateway = await stack.startGateway();
    const customer = await stack.user('user');
    const client = await clients.authenticated(`ws://127.0.0.1:${gateway.port}/`, customer.token);
    const sessionId = ((await client.request({ type: 'create_session' })).session as { id: number }).id;
    // The session's row locked: persistence's insert waits, so the first send stays published and unanswered.
    const locker = new pg.Client({ connectionString: stack.database.url });
    const db = new pg.Client({ connectionString: stack.database.url });
    await locker.connect();
    await db.connect();
    try {
      await locker.query('begin');
      await locker.query('select 1 from sessions where id = $1 for update', [sessionId]);
      client.send({ type: 'send_message', session_id: sessionId, content: 'in flight', client_msg_id: 'restart-1', req_id: 's1' });
      client.send({ type: 'send_message', session_id: sessionId, content: 'queued', client_msg_id: 'restart-2', req_id: 's2' });
      // The first send is published once persistence's insert waits for the lock.
      await insertWaitsForLock();
      gateway.child.kill('SIGTERM');
      // Draining (readiness failed) before the commit lets the first send be confirmed.
      await draining(gateway);
      // Frames arriving while the restart waits for the send in flight are answered, not dropped.
      // The lock goes at once: the wait is 2 s, and the first send's ack must come within it.
      client.send({ type: 'send_message', session_id: sessionId, content: 'late', client_msg_id: 'restart-3', req_id: 's3' });
      client.send({ type: 'ping', req_id: 'p1' });
      await locker.query('commit');
      expect(await client.waitFor((frame) => frame.req_id === 's3')).toMatchObject({
        type: 'error',
        code: 'unavailable',
        client_msg_id: 'restart-3',
      });
      expect(await client.waitFor((frame) => frame.req_id === 'p1')).toMatchObject({ type: 'error', code: 'unavailable' });
    } finally {
      await locker.end();
    }
    expect(await client.waitFor((frame) => frame.req_id === 's1')).toMatchObject({ type: 'message_ack', client_msg_id: 'restart-1' });
    expect(await client.waitFor((frame) => frame.req_id === 's2')).toMatchObject({
      type: 'error',
      code: 'unavailable',
      client_msg_id: 'restart-2',
    });
    expect(await client.closed).toBe(1012);
    expect(await gateway.exited).toBe(0);
    try {
      const { rows } = await db.query('select client_msg_id from messages where session_id = $1', [sessionId]);
      expect(rows).toEqual([{ client_msg_id: 'restart-1' }]);
    } finally {
      await db.end();
    }
  });

  it('answers the request it is handling before closing with 1012: a session made is not lost with its reply', async () => {
    const gateway = await stack.startGateway({ DRAIN_SECONDS: '0' });
    const customer = await stack.user('user');
    const client = await clients.authenticated(`ws://127.0.0.1:${gateway.port}/`, customer.token);
    // New sessions wait for the table lock: the create_session stays in the gateway's hands.
    const locker = new pg.Client({ connectionString: stack.database.url });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table sessions in share mode');
      client.send({ type: 'create_session', req_id: 'c1' });
      await insertWaitsForLock();
      gateway.child.kill('SIGTERM');
      // With DRAIN_SECONDS 0 the socket's close begins as readiness fails.
      await draining(gateway);
      await locker.query('commit');
    } finally {
      await locker.end();
    }
    // Before, the socket closed at once and the reply was dropped: a client retrying made a second session.
    expect(await client.waitFor((frame) => frame.req_id === 'c1')).toMatchObject({ type: 'session_created' });
    expect(await client.closed).toBe(1012);
    expect(await gateway.exited).toBe(0);
  });

  it('takes DRAIN_SECONDS up to 20, within the 30 s a stop has with its tail of up to 8 s', () => {
    expect(loadGatewayConfig({ DRAIN_SECONDS: '20' }).drainSeconds).toBe(20);
    expect(() => loadGatewayConfig({ DRAIN_SECONDS: '21' })).toThrow(/DRAIN_SECONDS/);
  });

  it('loses nothing when persistence is stopped and replaced mid-load', async () => {
    const customer = await stack.user('user');
    const agent = await stack.user('agent');
    const a = await clients.authenticated(stack.wsUrl(0), customer.token);
    const b = await clients.authenticated(stack.wsUrl(0), agent.token);
    const sessionId = ((await a.request({ type: 'create_session' })).session as { id: number }).id;
    await a.request({ type: 'join_session', session_id: sessionId });
    await b.request({ type: 'join_session', session_id: sessionId });

    let acked = 0;
    const swap = (async () => {
      await waitFor(() => acked >= 30, 60_000, '30 acks', 5);
      const old = stack.persistence[0];
      const replacement = stack.startPersistence();
      expect(await old?.stop()).toBe(0);
      await replacement;
    })();
    await Promise.all([
      swap,
      ...[a, b].map(async (client, index) => {
        for (let i = 0; i < 50; i++) {
          await sendReliably(client, { sessionId, clientMsgId: `drain-${index}-${i}`, content: `m${i}` });
          acked++;
        }
      }),
    ]);

    const db = new pg.Client({ connectionString: stack.database.url });
    await db.connect();
    try {
      const { rows } = await db.query<{ seq: number }>('select seq::int from messages where session_id = $1 order by seq', [sessionId]);
      expect(rows.map((row) => row.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    } finally {
      await db.end();
    }
    await a.waitForCount((frame) => frame.type === 'new_message', 100);
    expect(a.messages(sessionId).map((message) => message.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });
});

describe('connection age', () => {
  it('closes a socket open for MAX_CONNECTION_AGE_S with 1012, so that its client reconnects, perhaps to a pod added since', async () => {
    const gateway = await stack.startGateway({ MAX_CONNECTION_AGE_S: '2' });
    const user = await stack.user('user');
    // A socket of a gateway with the default (0) stays open meanwhile.
    const lasting = await clients.authenticated(stack.wsUrl(0), user.token);
    const ages = await Promise.all(
      [1, 2, 3].map(async () => {
        const socket = await clients.authenticated(`ws://127.0.0.1:${gateway.port}/ws`, user.token);
        // Taken once the socket is open, so later than the gateway's own start of its age.
        const openedAt = performance.now();
        return { code: await socket.closed, age: performance.now() - openedAt };
      }),
    );
    for (const { code, age } of ages) {
      expect(code).toBe(1012);
      // A tenth either way: never before 1.8 s.
      expect(age).toBeGreaterThanOrEqual(1_800);
    }
    expect(await lasting.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    // The gateway goes on taking sockets, and stops as it should.
    const next = await clients.authenticated(`ws://127.0.0.1:${gateway.port}/ws`, user.token);
    expect(await next.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    expect(await gateway.stop()).toBe(0);
  });
});

describe('metrics and stats', () => {
  it('moves the counters with traffic', async () => {
    const customer = await stack.user('user');
    const client = await clients.authenticated(stack.wsUrl(0), customer.token);
    const sessionId = ((await client.request({ type: 'create_session' })).session as { id: number }).id;
    await client.request({ type: 'join_session', session_id: sessionId });
    for (let i = 0; i < 3; i++)
      expect((await client.request({ type: 'send_message', session_id: sessionId, content: `m${i}` })).type).toBe('message_ack');

    const gateway = await (await fetch(stack.gateways[0]?.opsUrl('/metrics') ?? '')).text();
    expect(gateway).toMatch(/switchboard_gateway_frames_in_total\{type="send_message",service="gateway"\} [1-9]/);
    expect(gateway).toMatch(/switchboard_gateway_frames_out_total\{type="new_message",service="gateway"\} [1-9]/);
    expect(gateway).toMatch(/switchboard_gateway_send_confirm_seconds_count\{service="gateway"\} [1-9]/);
    expect(gateway).toMatch(/switchboard_gateway_connections\{service="gateway"\} [1-9]/);
    const persistence = await (await fetch(stack.persistence.at(-1)?.opsUrl('/metrics') ?? '')).text();
    expect(persistence).toMatch(/switchboard_persistence_messages_total\{outcome="stored",service="persistence"\} [1-9]/);
    expect(persistence).toMatch(/switchboard_persistence_batch_size_count\{service="persistence"\} [1-9]/);
    expect(persistence).toMatch(/switchboard_persistence_commit_seconds_count\{service="persistence"\} [1-9]/);
    const auth = await (await fetch(stack.auth.opsUrl('/metrics'))).text();
    expect(auth).toMatch(/switchboard_auth_tokens_issued_total\{kind="password",service="auth"\} [1-9]/);
  });

  it('lists every service in $SRV.STATS and in npm run status', async () => {
    const nc = await connect({ servers: TEST_NATS_URL });
    try {
      const stats: EndpointStats[] = [];
      for await (const entry of await nc.services.client({ strategy: RequestStrategy.Timer, maxWait: 1_000 }).stats()) stats.push(entry);
      const ours = stats.filter((entry) => entry.name.startsWith(`${stack.prefix}-`));
      expect(new Set(ours.map((entry) => entry.name))).toEqual(
        new Set(['auth', 'persistence', 'gateway'].map((name) => `${stack.prefix}-${name}`)),
      );
      const gateway = ours.find((entry) => entry.name === `${stack.prefix}-gateway`);
      expect(gateway?.endpoints?.[0]?.data).toMatchObject({ connections: expect.any(Number), sessions: expect.any(Number) });
    } finally {
      await nc.close();
    }

    const { stdout } = await promisify(execFile)(process.execPath, ['apps/status/dist/main.js'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH, NATS_SUBJECT_PREFIX: stack.prefix },
    });
    expect(stdout).toMatch(/^auth\s+\S+\s+0\.1\.0/m);
    expect(stdout).toMatch(/^persistence\s+\S+\s+0\.1\.0\s+\S+\s+\d+\s+0\s+stored=\d+/m);
    expect(stdout).toMatch(/^gateway\s+\S+\s+0\.1\.0.*connections=\d+/m);
    expect(stdout).toMatch(/gateway: 1 instance, connections \d+/);
  });
});
