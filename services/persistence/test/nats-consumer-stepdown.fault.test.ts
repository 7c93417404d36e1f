import { metric, waitFor } from '@switchboard/testing';
import { connect } from 'nats';
import { afterAll, describe, expect, it } from 'vitest';
import { type ClusterHarness, REPLICATED, startClusterHarness } from './support.js';

/**
 * The inbound consumer's leader changes (a step-down, a server in lame-duck mode) while
 * persistence, connected to another server of the cluster, waits on its pull: the old leader
 * drops the request, and the pull's heartbeats stop. nats.js sends the pull again at the second
 * interval without one, and persistence ends the pull at the third, which could leave the request
 * nats.js sent on the server with nobody listening: no message may wait for the ack wait for it.
 */

let cluster: ClusterHarness | undefined;

afterAll(async () => {
  await cluster?.close();
});

describe('persistence on a NATS cluster, when the consumer leader steps down', () => {
  it('stores what is published after it in order, without a redelivery', async () => {
    cluster = await startClusterHarness('consumer-stepdown');
    const { servers, first, live, publish } = cluster;
    const leader = await cluster.consumerLeader();
    // Connected to a server that does not lead the consumer: the pull waits on the leader through it.
    const follower = servers.find((_, index) => leader !== `n${index}`);
    if (!follower) throw new Error('no follower');
    const persistence = await live.startPersistence({ ...REPLICATED, NATS_URL: follower.url });

    const [sessionId = 0] = await live.createSessions(1);
    for (let i = 0; i < 5; i++) await publish(sessionId, `before-${i}`);
    await waitFor(async () => (await live.stored()).length === 5, 10_000, 'the first messages to be stored');
    // The pull waiting on the leader again.
    await new Promise((resolve) => setTimeout(resolve, 1_500));

    const nc = await connect({ servers: first.url });
    try {
      const subject = `$JS.API.CONSUMER.LEADER.STEPDOWN.${live.subjects.inboundStream}.${live.subjects.inboundConsumer}`;
      const reply = await nc.request(subject, new Uint8Array(), { timeout: 5_000 });
      expect(reply.json<{ success?: boolean }>().success).toBe(true);
    } finally {
      await nc.close();
    }
    const steppedDownAt = performance.now();
    await waitFor(async () => (await cluster?.consumerLeader()) !== leader, 10_000, 'a new consumer leader');
    // Published over the seconds in which the pull's heartbeats are missed and it is sent again.
    for (let i = 0; i < 10; i++) {
      await publish(sessionId, `after-${i}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    await waitFor(async () => (await live.stored()).length === 15, 30_000, 'every message to be stored');
    const redeliveries = await metric(persistence, 'switchboard_persistence_redeliveries_total');
    console.log(
      `[nats-consumer-stepdown] all stored ${Math.round(performance.now() - steppedDownAt)} ms after the step-down; redeliveries ${redeliveries}`,
    );
    expect((await live.stored()).map((message) => message.client_msg_id)).toEqual([
      ...Array.from({ length: 5 }, (_, i) => `before-${i}`),
      ...Array.from({ length: 10 }, (_, i) => `after-${i}`),
    ]);
    expect(redeliveries).toBe(0);
  });
});
