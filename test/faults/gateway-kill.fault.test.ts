import { LoadClient, type Stack, slowInserts, startStack, waitFor } from '@switchboard/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { assertAllAcked, assertClean, createSessions, deadLetterCount, sleep, summary, verify } from './support.js';

let stack: Stack | undefined;
const clients: LoadClient[] = [];

afterAll(async () => {
  await Promise.all(clients.map((client) => client.close()));
  await stack?.stop();
});

describe('a gateway killed with SIGKILL mid-load', () => {
  it('lets its clients resume on the other gateway without losing, repeating or reordering anything', async () => {
    const startedAt = Date.now();
    stack = await startStack({ gateways: 2, persistence: 1, gatewayEnv: { SEND_TIMEOUT_MS: '3000' } });
    const running = stack;
    // Stores take 30 ms longer, so the kill finds sends in flight.
    await slowInserts(running.database.url, 30);
    const sessions = await createSessions(running, 3);
    const agents = await Promise.all([0, 1, 2].map(() => running.user('agent')));
    const [doomedUrl, survivorUrl] = [running.wsUrl(0), running.wsUrl(1)];
    // Customers and one agent start on the doomed gateway, two agents on the other.
    for (const [index, session] of sessions.entries())
      clients.push(
        new LoadClient({
          name: `customer${index}`,
          urls: [doomedUrl, survivorUrl],
          token: session.customer.token,
          userId: session.customer.id,
          join: [session.id],
          sendTo: [session.id],
          ratePerSec: 8,
        }),
      );
    for (const [index, agent] of agents.entries())
      clients.push(
        new LoadClient({
          name: `agent${index}`,
          urls: index === 0 ? [doomedUrl, survivorUrl] : [survivorUrl, doomedUrl],
          token: agent.token,
          userId: agent.id,
          join: sessions.map((session) => session.id),
          sendTo: sessions.map((session) => session.id),
          ratePerSec: 8,
        }),
      );
    await Promise.all(clients.map((client) => client.start()));
    for (const client of clients) client.startSending();

    await sleep(5_000);
    const moved = clients.filter((client) => client.name.startsWith('customer') || client.name === 'agent0');
    // Kill while at least two of its clients wait for an ack.
    await waitFor(() => moved.filter((client) => client.awaitingAck).length >= 2, 10_000, 'sends in flight');
    const doomed = running.gateways[0];
    expect(await doomed?.kill()).toBe('SIGKILL');
    await sleep(8_000);
    await Promise.all(clients.map((client) => client.stop()));

    const report = await verify(clients, { databaseUrl: running.database.url });
    console.log(summary('gateway-kill', report, clients, startedAt));
    assertClean(report);
    assertAllAcked(clients);
    // Everyone who was on the doomed gateway came back (on the survivor), and kept sending there.
    for (const client of moved) {
      expect(client.connects).toBeGreaterThanOrEqual(2);
      expect(client.closeCodes[0]).toBe(1006);
    }
    for (const client of clients.filter((c) => !moved.includes(c))) expect(client.connects).toBe(1);
    expect(moved.reduce((sum, client) => sum + client.resends, 0)).toBeGreaterThanOrEqual(1);
    expect(report.totals.acked).toBeGreaterThan(300);
    expect(await deadLetterCount(running.database.url)).toBe(0);
  });
});
