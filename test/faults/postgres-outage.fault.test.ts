import { createTestDatabase, metric, query, type ServiceProcess, TcpProxy, type TestDatabase, waitFor } from '@switchboard/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { conversationLoad, deadLetterCount, isRunning, opsStatus, Scenario, sleep, startLoad, verifyClean } from './support.js';

const scenario = new Scenario();
const { clients } = scenario;
let database: TestDatabase | undefined;
let proxy: TcpProxy | undefined;

afterAll(async () => {
  // The services shut down with their database reachable.
  proxy?.restore();
  await scenario.close();
  await proxy?.close();
  await database?.drop();
});

const OUTAGE_MS = 5_000;

describe('PostgreSQL cut off for 5 s mid-load', () => {
  it('acks nothing while cut, answers unavailable, crashes nothing, and catches everything up after', async () => {
    const startedAt = Date.now();
    // Auth and persistence reach PostgreSQL only through a proxy the test can cut.
    database = await createTestDatabase('pg_outage');
    proxy = await TcpProxy.toPostgres(database.url);
    const running = await scenario.start({
      gateways: 2,
      persistence: 1,
      env: { DATABASE_URL: proxy.url(database.url) },
      gatewayEnv: { SEND_TIMEOUT_MS: '2000' },
      // The outage lasts longer than ack wait × max deliver: messages waiting for the database
      // must be kept alive, not redelivered (each redelivery counts against max deliver).
      persistenceEnv: { INBOUND_ACK_WAIT: '1s', INBOUND_MAX_DELIVER: '3' },
    });
    const cuttable = proxy;
    const backends: ServiceProcess[] = [running.auth, ...running.persistence];
    clients.push(...(await conversationLoad(running, { sessions: 3, agents: 3, ratePerSec: 8, attemptTimeoutMs: { agent: 1_500 } })));
    await startLoad(clients);
    await sleep(4_000);

    const acksAt = () => clients.reduce((sum, client) => sum + client.acks.length, 0);
    const unavailableAt = () => clients.reduce((sum, client) => sum + (client.errors.get('unavailable') ?? 0), 0);
    // Counted from the cut: an `unavailable` before it would say nothing of the outage.
    const unavailableBeforeCut = unavailableAt();
    const acksBeforeCut = clients.map((client) => client.acks.length);
    cuttable.cut();
    const cutAt = Date.now();
    // What was stored at the cut, read past the proxy: no commit can be reported to persistence after it.
    const storedAtCut = new Set(
      (await query<{ client_msg_id: string }>(database.url, 'select client_msg_id from messages')).map((row) => row.client_msg_id),
    );
    // Acks already on their way may land just after the cut; after that, none until the database is back.
    await sleep(1_000);
    const acksAfterCut = acksAt();
    // Those late acks are for messages committed before the cut, never for ones still to be stored.
    const lateAcks = clients.flatMap((client, index) => client.acks.slice(acksBeforeCut[index]));
    expect(lateAcks.filter((ack) => !storedAtCut.has(ack.clientMsgId))).toEqual([]);
    await waitFor(async () => (await opsStatus(running.persistence[0] as ServiceProcess, '/readyz')) === 503, 4_000, 'persistence unready');
    const unreadyAfter = Date.now() - cutAt;
    for (const service of backends) {
      expect(isRunning(service)).toBe(true);
      expect(await opsStatus(service, '/healthz')).toBe(200);
    }
    for (const gateway of running.gateways) expect(await opsStatus(gateway, '/readyz')).toBe(200);
    await sleep(Math.max(0, OUTAGE_MS - (Date.now() - cutAt)));
    const acksDuringOutage = acksAt() - acksAfterCut;
    const unavailableDuringOutage = unavailableAt() - unavailableBeforeCut;
    cuttable.restore();
    const restoredAt = Date.now();

    await waitFor(async () => (await opsStatus(running.persistence[0] as ServiceProcess, '/readyz')) === 200, 10_000, 'persistence ready');
    const readyAfter = Date.now() - restoredAt;
    await sleep(6_000);
    await Promise.all(clients.map((client) => client.stop()));

    await verifyClean(clients, {
      label: 'postgres-outage',
      startedAt,
      databaseUrl: database.url,
      details: [
        `unready-after=${unreadyAfter}ms ready-after-restore=${readyAfter}ms refused=${cuttable.refused} acks-after-cut=${lateAcks.length}`,
      ],
    });
    expect(acksDuringOutage).toBe(0);
    expect(unavailableDuringOutage).toBeGreaterThan(0);
    // Clear errors, nothing worse: no message was given up on, no socket closed.
    for (const client of clients) {
      expect([...client.errors.keys()].filter((code) => code !== 'unavailable')).toEqual([]);
      expect(client.connects).toBe(1);
    }
    for (const service of [...backends, ...running.gateways]) expect(isRunning(service)).toBe(true);
    // The batch in hand was retried, its ack deadlines kept alive: no redelivery.
    expect(await metric(running.persistence[0] as ServiceProcess, 'switchboard_persistence_store_retries_total')).toBeGreaterThan(0);
    expect(await metric(running.persistence[0] as ServiceProcess, 'switchboard_persistence_redeliveries_total')).toBe(0);
    expect(await deadLetterCount(database.url)).toBe(0);
  });
});
