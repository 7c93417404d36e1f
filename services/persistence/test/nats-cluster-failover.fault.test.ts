import { metric, waitFor } from '@switchboard/testing';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { type ClusterHarness, REPLICATED, startClusterHarness } from './support.js';

/**
 * A NATS server of a cluster dies: the one persistence is connected to, which also leads the
 * inbound consumer (a rolling update of a NATS StatefulSet does this to every server in turn).
 * Persistence reconnects to another server at once, but its pull waited on the dead one: nats.js
 * asked for it again only after the new consumer leader answered an info request, and while that
 * leader was being elected it waited a whole pull expiry (30 s) before asking again. Nothing was
 * stored meanwhile. Now the pull is sent again at once, and again whenever its heartbeats stop.
 *
 * At the death, persistence also holds a batch it has not committed (a row lock holds it up):
 * its commit comes while the connection is away, so its acks are lost, and the messages are
 * delivered again; each must still be stored once, in order.
 */

let cluster: ClusterHarness | undefined;
let holder: pg.Client | undefined;

afterAll(async () => {
  await holder?.end().catch(() => undefined);
  await cluster?.close();
});

describe('persistence on a NATS cluster, when the server it is connected to dies', () => {
  it('stores what is published after the death within the consumer leader election, well before a pull expiry, and what it held at the death once', async () => {
    cluster = await startClusterHarness('cluster-failover');
    const { servers, live, publish } = cluster;
    const leader = await cluster.consumerLeader();
    const victim = servers.find((_, index) => leader === `n${index}`);
    if (!victim) throw new Error(`the consumer's leader ${leader} is none of the servers`);
    const persistence = await live.startPersistence({ ...REPLICATED, NATS_URL: victim.url });

    const [sessionId = 0] = await live.createSessions(1);
    for (let i = 0; i < 5; i++) await publish(sessionId, `before-${i}`);
    await waitFor(async () => (await live.stored()).length === 5, 10_000, 'the first messages to be stored');

    // A batch in hand, not committed: it waits for the session's row.
    holder = new pg.Client({ connectionString: live.database.url });
    await holder.connect();
    await holder.query('begin');
    await holder.query('select id from sessions where id = $1 for update', [sessionId]);
    for (let i = 0; i < 3; i++) await publish(sessionId, `held-${i}`);
    await waitFor(async () => (await live.bus.inboundStats()).ackPending === 3, 10_000, 'the held messages to be delivered to persistence');

    await victim.kill();
    const killedAt = performance.now();
    await publish(sessionId, 'after-0');
    await holder.query('rollback');
    // Before, nothing was stored for a pull expiry (30 s) and more after the election.
    await waitFor(
      async () => (await live.stored()).some((message) => message.client_msg_id === 'after-0'),
      25_000,
      'the message published after the death to be stored',
    );
    console.log(`[nats-cluster-failover] stored ${Math.round(performance.now() - killedAt)} ms after the server's death`);
    for (let i = 1; i < 10; i++) await publish(sessionId, `after-${i}`);
    await waitFor(async () => (await live.stored()).length >= 18, 20_000, 'every message to be stored');
    // Every message handed out again has been settled: nothing more can be stored.
    await waitFor(async () => (await live.bus.inboundStats()).ackPending === 0, 30_000, 'every delivery to be settled');
    const stored = await live.stored();
    expect(stored.map((message) => message.client_msg_id)).toEqual([
      ...Array.from({ length: 5 }, (_, i) => `before-${i}`),
      ...Array.from({ length: 3 }, (_, i) => `held-${i}`),
      ...Array.from({ length: 10 }, (_, i) => `after-${i}`),
    ]);
    expect(stored.map((message) => message.seq)).toEqual(Array.from({ length: 18 }, (_, i) => i + 1));
    expect(await live.deadLetters()).toBe(0);
    console.log(`[nats-cluster-failover] redeliveries ${await metric(persistence, 'switchboard_persistence_redeliveries_total')}`);
  });
});
