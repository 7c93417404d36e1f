import { metric, slowInserts, waitFor } from '@switchboard/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { conversationLoad, deadLetterCount, Scenario, sleep, startLoad, verifyClean } from './support.js';

const scenario = new Scenario();
const { clients } = scenario;

afterAll(() => scenario.close());

describe('a gateway killed with SIGKILL mid-load', () => {
  it('lets its clients resume on the other gateway without losing, repeating or reordering anything', async () => {
    const startedAt = Date.now();
    const running = await scenario.start({ gateways: 2, persistence: 1, gatewayEnv: { SEND_TIMEOUT_MS: '3000' } });
    // Stores take 30 ms longer, so the kill finds sends in flight.
    await slowInserts(running.database.url, 30);
    const [doomedUrl, survivorUrl] = [running.wsUrl(0), running.wsUrl(1)];
    // Customers and one agent start on the doomed gateway, two agents on the other.
    const urls = (role: 'customer' | 'agent', index: number) =>
      role === 'customer' || index === 0 ? [doomedUrl, survivorUrl] : [survivorUrl, doomedUrl];
    clients.push(...(await conversationLoad(running, { sessions: 3, agents: 3, urls, ratePerSec: 8 })));
    await startLoad(clients);

    await sleep(5_000);
    const moved = clients.filter((client) => client.name.startsWith('customer') || client.name === 'agent0');
    // Kill while at least two of its clients wait for an ack.
    await waitFor(() => moved.filter((client) => client.awaitingAck).length >= 2, 10_000, 'sends in flight');
    const doomed = running.gateways[0];
    expect(await doomed?.kill()).toBe('SIGKILL');
    await sleep(8_000);
    await Promise.all(clients.map((client) => client.stop()));

    // Sends the doomed gateway had published before it died, sent again on the survivor: the
    // stream knew their ids and took none of them twice.
    const survivor = running.gateways[1];
    const duplicateSends = survivor ? await metric(survivor, 'switchboard_gateway_duplicate_sends_total') : 0;
    const report = await verifyClean(clients, {
      label: 'gateway-kill',
      startedAt,
      databaseUrl: running.database.url,
      details: [`duplicate-sends-on-survivor=${duplicateSends}`],
    });
    // Everyone who was on the doomed gateway came back (on the survivor), and kept sending there.
    for (const client of moved) {
      expect(client.connects).toBeGreaterThanOrEqual(2);
      expect(client.closeCodes[0]).toBe(1006);
    }
    for (const client of clients.filter((c) => !moved.includes(c))) expect(client.connects).toBe(1);
    expect(moved.reduce((sum, client) => sum + client.resends, 0)).toBeGreaterThanOrEqual(1);
    expect(duplicateSends).toBeGreaterThanOrEqual(1);
    expect(report.totals.acked).toBeGreaterThan(300);
    expect(await deadLetterCount(running.database.url)).toBe(0);
  });
});
