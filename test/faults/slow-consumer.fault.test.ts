import { fillHistory, LoadClient, metric, query, TestClient, waitFor } from '@switchboard/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { assertAllAcked, assertClean, createAgents, createSessions, isRunning, Scenario, sleep, summary, verify } from './support.js';

const scenario = new Scenario();
const { clients } = scenario;

afterEach(() => scenario.close());

const MB = 1024 * 1024;
const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))] ?? 0;

describe('a member that stops reading in a busy session of large messages', () => {
  it('is cut off with bounded gateway memory while the others keep receiving, and resyncs without a gap', async () => {
    const startedAt = Date.now();
    const running = await scenario.start({
      gateways: 1,
      persistence: 1,
      gatewayEnv: { MAX_BUFFERED_BYTES: '65536', SLOW_CLIENT_GRACE_MS: '1000', MAX_CONTENT_CHARS: '32000' },
    });
    const gateway = running.gateways[0];
    if (!gateway) throw new Error('no gateway');
    const [session] = await createSessions(running, 1);
    if (!session) throw new Error('no session');
    const urls = [running.wsUrl(0)];
    const agents = await createAgents(running, 5);
    // Four senders of ~30 kB messages, 10 per second each (about 1.2 MB/s to every member).
    const senders = agents.slice(0, 4).map(
      (agent, index) =>
        new LoadClient({
          name: `sender${index}`,
          urls,
          token: agent.token,
          userId: agent.id,
          join: [session.id],
          sendTo: [session.id],
          ratePerSec: 10,
          contentChars: 30_000,
        }),
    );
    const reader = new LoadClient({ name: 'reader', urls, token: session.customer.token, join: [session.id] });
    const slow = new LoadClient({ name: 'slow', urls, token: (agents[4] as { token: string }).token, join: [session.id] });
    clients.push(...senders, reader, slow);
    await Promise.all(clients.map((client) => client.start()));
    const rssBefore = await metric(gateway, 'process_resident_memory_bytes');

    const firstClose = slow.closeCodes.length;
    slow.pauseReading();
    for (const sender of senders) sender.startSending();
    let rssPeak = rssBefore;
    const pausedAt = Date.now();
    await waitFor(
      async () => {
        rssPeak = Math.max(rssPeak, await metric(gateway, 'process_resident_memory_bytes'));
        return (await metric(gateway, 'switchboard_gateway_slow_clients_closed_total')) >= 1;
      },
      60_000,
      'the gateway to close the slow client',
    );
    const cutOffAfter = Date.now() - pausedAt;
    // Keep the load on a while longer: the gateway holds nothing more for the closed socket.
    for (let i = 0; i < 6; i++) {
      await sleep(500);
      rssPeak = Math.max(rssPeak, await metric(gateway, 'process_resident_memory_bytes'));
    }

    // The client reads again: it finds its socket closed, reconnects and rejoins from its last seq.
    slow.resumeReading();
    await waitFor(() => slow.connects >= 2, 20_000, 'the slow client to reconnect');
    // What the cut-off socket had delivered when it closed (its buffers read to the end), and what
    // was stored by the time it rejoined: most of the seqs between came only by the rejoin's replay.
    const slowCursorAtClose = slow.cursorsAtClose[firstClose]?.get(session.id) ?? 0;
    const storedAtRejoin = Number(
      (await query<{ n: string }>(running.database.url, 'select count(*) as n from messages where session_id = $1', [session.id]))[0]?.n,
    );
    await sleep(3_000);
    await Promise.all(senders.map((sender) => sender.stop()));
    const rssAfter = await metric(gateway, 'process_resident_memory_bytes');

    const report = await verify(clients, { databaseUrl: running.database.url });
    const latencies = [...reader.latenciesMs, ...senders.flatMap((sender) => sender.latenciesMs)];
    console.log(
      summary('slow-consumer', report, clients, startedAt),
      `cut-off-after=${cutOffAfter}ms close=${slow.closeCodes.join(',')} slow-cursor-at-close=${slowCursorAtClose} stored-at-rejoin=${storedAtRejoin}`,
      `rss-before=${(rssBefore / MB).toFixed(0)}MB peak=${(rssPeak / MB).toFixed(0)}MB after=${(rssAfter / MB).toFixed(0)}MB`,
      `others' latency p50=${percentile(latencies, 0.5)}ms p99=${percentile(latencies, 0.99)}ms max=${Math.max(...latencies)}ms`,
    );
    assertClean(report);
    assertAllAcked(senders);
    expect([1013, 1006]).toContain(slow.closeCodes[0]);
    expect(rssPeak - rssBefore).toBeLessThan(150 * MB);
    // The others never lost their sockets and got every message (the checker saw no gap in any transcript).
    for (const client of [reader, ...senders]) expect(client.connects).toBe(1);
    expect(reader.records().transcripts[0]?.messages.length).toBe(report.totals.stored);
    // Its socket was closed while messages went on being stored: the rejoin had to replay them,
    // and (the checker saw no gap) it did; the slow client ends with every message.
    expect(storedAtRejoin).toBeGreaterThan(slowCursorAtClose);
    // The gateway said so at the rejoin: the session was ahead of what the socket had delivered.
    expect(slow.rejoinsBehind).toBeGreaterThan(0);
    expect(slow.records().transcripts[0]?.messages.length).toBe(report.totals.stored);
  });
});

describe('a client far behind in a session of large messages', () => {
  it('gets the whole session replayed and can page its history, with default limits', async () => {
    const running = await scenario.start({ gateways: 1, persistence: 1 });
    const [session] = await createSessions(running, 1);
    if (!session) throw new Error('no session');
    // 600 messages of the largest content allowed by default (4000 characters, 3 bytes each in
    // UTF-8): 7 MB in all, far more than one NATS message (1 MiB) can carry.
    const content = '\u20ac'.repeat(4000);
    await fillHistory(running.database.url, { sessionId: session.id, senderId: session.customer.id, content, count: 600 });
    const socket = await TestClient.connect(running.wsUrl(0));
    try {
      await socket.request({ type: 'auth', token: session.customer.token });
      expect(await socket.request({ type: 'join_session', session_id: session.id, last_seq: 0 })).toMatchObject({ last_seq: 600 });
      await socket.waitForCount((frame) => frame.type === 'new_message', 600, 30_000);
      expect(socket.messages(session.id).map((message) => message.seq)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
      // A full history page would not fit either: it comes back shorter, newest messages first, with has_more.
      const page = await socket.request({ type: 'history', session_id: session.id, limit: 200 });
      const seqs = (page.messages as { seq: number }[]).map((message) => message.seq);
      expect(page.has_more).toBe(true);
      expect(seqs.length).toBeGreaterThan(0);
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => 601 - seqs.length + i));
    } finally {
      await socket.close();
    }
    for (const persistence of running.persistence) expect(isRunning(persistence)).toBe(true);
  });
});
