import { type LoadClient, metric, type ServiceProcess, type Stack, slowInserts, startStack } from '@switchboard/testing';
import { afterAll, describe, expect, it } from 'vitest';
import {
  assertAllAcked,
  assertClean,
  conversationLoad,
  createSessions,
  deadLetterCount,
  isRunning,
  sleep,
  summary,
  verify,
} from './support.js';

let stack: Stack | undefined;
const clients: LoadClient[] = [];

afterAll(async () => {
  await Promise.all(clients.map((client) => client.close()));
  await stack?.stop();
});

describe('persistence replicas killed with SIGKILL every 2–3 s', () => {
  it('loses nothing, stores nothing twice and keeps every order', async () => {
    const startedAt = Date.now();
    stack = await startStack({ gateways: 2, persistence: 2, gatewayEnv: { SEND_TIMEOUT_MS: '3000' } });
    const running = stack;
    // Each batch holds its transaction open for 15 ms more, so most kills land inside one.
    await slowInserts(running.database.url, 15);
    const sessions = await createSessions(running, 3);
    const urls = [running.wsUrl(0), running.wsUrl(1)];
    const agents = await Promise.all([0, 1, 2].map(() => running.user('agent')));
    // Agents are impatient: they resend while the first copy may still be on its way (duplicate publish, lookup).
    clients.push(
      ...conversationLoad(sessions, agents, { urls, ratePerSec: 8, customerAttemptTimeoutMs: 4_000, agentAttemptTimeoutMs: 1_500 }),
    );
    await Promise.all(clients.map((client) => client.start()));
    for (const client of clients) client.startSending();

    // Kill one live replica every 2–3 s and start a replacement, alternating, for 20 s.
    const alive = (): ServiceProcess[] => running.persistence.filter(isRunning);
    let kills = 0;
    let redeliveries = 0;
    const killUntil = Date.now() + 20_000;
    while (Date.now() < killUntil) {
      await sleep(2_000 + Math.random() * 1_000);
      const victim = alive()[kills % 2];
      if (!victim) continue;
      redeliveries += await metric(victim, 'switchboard_persistence_redeliveries_total').catch(() => 0);
      await victim.kill();
      kills++;
      await running.startPersistence();
    }
    await Promise.all(clients.map((client) => client.stop()));
    for (const replica of alive()) redeliveries += await metric(replica, 'switchboard_persistence_redeliveries_total');

    const report = await verify(clients, { databaseUrl: running.database.url });
    console.log(summary('persistence-kill-loop', report, clients, startedAt), `kills=${kills} redeliveries=${redeliveries}`);
    assertClean(report);
    assertAllAcked(clients);
    expect(kills).toBeGreaterThanOrEqual(4);
    expect(report.totals.acked).toBeGreaterThan(200);
    expect(await deadLetterCount(running.database.url)).toBe(0);
  });
});
