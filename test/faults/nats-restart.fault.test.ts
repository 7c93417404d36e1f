import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { metric, NatsServer, type ServiceProcess, waitFor } from '@switchboard/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { conversationLoad, deadLetterCount, isRunning, opsStatus, Scenario, sleep, startLoad, verifyClean } from './support.js';

const scenario = new Scenario();
const { clients } = scenario;
let nats: NatsServer | undefined;
let storeDir: string | undefined;

afterAll(async () => {
  // The server and its store go even when the scenario's close fails.
  try {
    await scenario.close();
  } finally {
    await nats?.stop();
    if (storeDir) await rm(storeDir, { recursive: true, force: true });
  }
});

describe('the NATS server killed with SIGKILL mid-load and restarted on the same store', () => {
  it('makes every service unready, then ready again, keeps client sockets open, and loses nothing acked', async () => {
    const startedAt = Date.now();
    storeDir = await mkdtemp(join(tmpdir(), 'switchboard-nats-'));
    nats = await NatsServer.start(storeDir);
    const server = nats;
    const running = await scenario.start({
      gateways: 2,
      persistence: 1,
      env: { NATS_URL: server.url },
      gatewayEnv: { SEND_TIMEOUT_MS: '3000' },
    });
    const services: ServiceProcess[] = [running.auth, ...running.persistence, ...running.gateways];
    clients.push(
      ...(await conversationLoad(running, { sessions: 3, agents: 3, ratePerSec: 8, attemptTimeoutMs: { customer: 4_000, agent: 2_000 } })),
    );
    await startLoad(clients);
    await sleep(5_000);

    // Twice: the consumer, the subscriptions and the gap fills must survive more than one restart.
    const outages: number[] = [];
    let ackedBefore = 0;
    const resends = () => clients.reduce((sum, client) => sum + client.resends, 0);
    const resendsPerRound: number[] = [];
    for (let round = 0; round < 2; round++) {
      const resendsBefore = resends();
      await server.kill();
      const killedAt = Date.now();
      await waitFor(
        async () => (await Promise.all(services.map((service) => opsStatus(service, '/readyz')))).every((status) => status === 503),
        10_000,
        'every service to report 503 on /readyz',
      );
      for (const service of services) {
        expect(isRunning(service)).toBe(true);
        expect(await opsStatus(service, '/healthz')).toBe(200);
      }
      await sleep(Math.max(0, 2_000 - (Date.now() - killedAt)));
      await server.restart();
      await waitFor(
        async () => (await Promise.all(services.map((service) => opsStatus(service, '/readyz')))).every((status) => status === 200),
        20_000,
        'every service to report 200 on /readyz',
      );
      outages.push(Date.now() - killedAt);
      ackedBefore = clients.reduce((sum, client) => sum + client.acks.length, 0);
      await sleep(6_000);
      resendsPerRound.push(resends() - resendsBefore);
    }
    await Promise.all(clients.map((client) => client.stop()));
    // How the members caught up: confirmed events published again with a redelivered batch (its
    // acks lost with the connection), or found missing by a gateway and fetched from persistence.
    let gapFills = 0;
    let headCatchUps = 0;
    for (const gateway of running.gateways) {
      gapFills += await metric(gateway, 'switchboard_gateway_gap_fills_total');
      headCatchUps += await metric(gateway, 'switchboard_gateway_head_catch_ups_total');
    }
    let republished = 0;
    for (const replica of running.persistence) {
      republished += await metric(replica, 'switchboard_persistence_messages_total', { outcome: 'duplicate' });
    }

    await verifyClean(clients, {
      label: 'nats-restart',
      startedAt,
      databaseUrl: running.database.url,
      details: [
        `ready-again-after=${outages.join(',')}ms`,
        `resends-per-round=${resendsPerRound.join(',')}`,
        `messages-redelivered-as-duplicates=${republished}`,
        `gap-fills=${gapFills}`,
        `sessions-caught-up-from-heads=${headCatchUps}`,
      ],
    });
    // Each kill cut sends off mid-load: they failed or went unanswered, were sent again with their
    // client_msg_id, and (verifyClean above) each was stored once, in order.
    for (const count of resendsPerRound) expect(count).toBeGreaterThan(0);
    // Client sockets survived the outage, and traffic flowed again after it.
    for (const client of clients) expect(client.connects).toBe(1);
    expect(clients.reduce((sum, client) => sum + client.acks.length, 0)).toBeGreaterThan(ackedBefore + 60);
    for (const service of services) expect(isRunning(service)).toBe(true);
    expect(await deadLetterCount(running.database.url)).toBe(0);
  });
});
