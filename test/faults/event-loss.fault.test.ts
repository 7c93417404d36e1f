import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, metric, NatsServer, TcpProxy, waitFor } from '@switchboard/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { conversationLoad, deadLetterCount, Scenario, sleep, startLoad, verifyClean } from './support.js';

const scenario = new Scenario();
const { clients } = scenario;
const servers: NatsServer[] = [];
let proxy: TcpProxy | undefined;
let storeDir: string | undefined;

afterAll(async () => {
  // The servers and their store go even when the scenario's close fails.
  try {
    await scenario.close();
  } finally {
    await Promise.allSettled(servers.map((server) => server.stop()));
    await proxy?.close();
    if (storeDir) await rm(storeDir, { recursive: true, force: true });
  }
});

/** How many leaf nodes the server has connected (its `/leafz`). */
async function leafNodes(server: NatsServer): Promise<number> {
  const response = await fetch(`${server.monitorUrl}/leafz`).catch(() => undefined);
  return response?.ok ? ((await response.json()) as { leafnodes: number }).leafnodes : -1;
}

/**
 * Confirmed events are core NATS messages: a link between NATS servers that breaks loses those in
 * flight, and the gateways' own connections never notice. Here one gateway reaches the services'
 * NATS (the hub) through a leaf node whose link to the hub is cut for 2 s while the other gateway's
 * clients go on writing: the events of that time never reach the leaf's gateway, which must find
 * them missing (a seq gap in the next event, or its periodic check of its sessions' heads) and
 * fetch them from persistence.
 */
describe('the link from a leaf NATS server to the hub cut mid-load, under one of two gateways', () => {
  it('loses confirmed events without a reconnect, and the gateway behind it fills every gap, in order', async () => {
    const startedAt = Date.now();
    storeDir = await mkdtemp(join(tmpdir(), 'switchboard-leaf-'));
    const leafPort = await freePort();
    const hubConfig = join(storeDir, 'hub.conf');
    await writeFile(hubConfig, `leafnodes { listen: "127.0.0.1:${leafPort}" }\n`);
    const hub = await NatsServer.start(join(storeDir, 'hub'), ['-c', hubConfig]);
    servers.push(hub);
    proxy = await TcpProxy.start({ host: '127.0.0.1', port: leafPort });
    const leafConfig = join(storeDir, 'leaf.conf');
    await writeFile(leafConfig, `leafnodes { remotes: [{ url: "nats://127.0.0.1:${proxy.port}" }] }\n`);
    // No JetStream of its own: the leaf's clients reach the hub's, as they reach its other subjects.
    const leaf = await NatsServer.start(join(storeDir, 'leaf'), ['-c', leafConfig], { jetStream: false });
    servers.push(leaf);
    await waitFor(async () => (await leafNodes(hub)) === 1, 10_000, 'the leaf node to connect to the hub');

    const running = await scenario.start({
      gateways: 1,
      persistence: 1,
      env: { NATS_URL: hub.url },
      gatewayEnv: { SEND_TIMEOUT_MS: '3000' },
    });
    const behindLeaf = await running.startGateway({ NATS_URL: leaf.url });
    // Every session has members on both gateways: customers and agents alternate which they use.
    clients.push(...(await conversationLoad(running, { sessions: 4, agents: 3, ratePerSec: 8 })));
    await startLoad(clients);
    await sleep(5_000);

    const gapFillsBefore = await metric(behindLeaf, 'switchboard_gateway_gap_fills_total');
    const catchUpsBefore = await metric(behindLeaf, 'switchboard_gateway_head_catch_ups_total');
    const ackedBefore = clients.reduce((sum, client) => sum + client.acks.length, 0);
    proxy.cut();
    await waitFor(async () => (await leafNodes(hub)) === 0, 5_000, 'the hub to drop the leaf node');
    await sleep(2_000);
    const ackedDuringCut = clients.reduce((sum, client) => sum + client.acks.length, 0) - ackedBefore;
    proxy.restore();
    await waitFor(async () => (await leafNodes(hub)) === 1, 15_000, 'the leaf node to connect again');
    // Long enough for the heads check (every 5 s) to find sessions whose events stopped in the cut.
    await sleep(8_000);
    await Promise.all(clients.map((client) => client.stop()));

    const gapFills = (await metric(behindLeaf, 'switchboard_gateway_gap_fills_total')) - gapFillsBefore;
    const catchUps = (await metric(behindLeaf, 'switchboard_gateway_head_catch_ups_total')) - catchUpsBefore;
    const reconnects = await metric(behindLeaf, 'switchboard_gateway_nats_reconnects_total');
    await verifyClean(clients, {
      label: 'event-loss',
      startedAt,
      databaseUrl: running.database.url,
      details: [`acked-during-cut=${ackedDuringCut}`, `gap-fills=${gapFills}`, `sessions-caught-up-from-heads=${catchUps}`],
    });
    // Messages were stored while the link was down, and their events were lost on the way to the
    // leaf: its gateway fetched them, never having lost its own connection to NATS.
    expect(ackedDuringCut).toBeGreaterThan(10);
    expect(gapFills + catchUps).toBeGreaterThan(0);
    expect(reconnects).toBe(0);
    for (const client of clients) expect(client.connects).toBe(1);
    expect(await deadLetterCount(running.database.url)).toBe(0);
  });
});
