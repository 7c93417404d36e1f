import {
  checkDelivery,
  formatReport,
  LoadClient,
  metric,
  readStored,
  refusePoison,
  removeSlowInserts,
  type Stack,
  slowInserts,
  TEST_NATS_URL,
  type TestClient,
  waitFor,
  withPgClient,
} from '@switchboard/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgents, createSessions, isRunning, type LoadSession, Scenario, sleep, verify } from './support.js';

/**
 * Messages that can never be stored: one PostgreSQL refuses (a trigger raising an exception),
 * a payload that does not decode, and one for a session that does not exist. Each must be set
 * aside after a bounded number of attempts and reported, without holding up or looping over
 * the good messages around it.
 */

const scenario = new Scenario();
const { clients, sockets } = scenario;
let stack: Stack;
let nats: NatsConnection;
let sessions: LoadSession[];

beforeAll(async () => {
  stack = await scenario.start({ gateways: 1, persistence: 1 });
  nats = await connect({ servers: TEST_NATS_URL });
  await refusePoison(stack.database.url);
  sessions = await createSessions(stack, 3);
});

afterAll(async () => {
  await nats?.close();
  await scenario.close();
});

const persistence = () => {
  const service = stack.persistence.filter(isRunning).at(-1);
  if (!service) throw new Error('no persistence');
  return service;
};
const deadLettered = () => metric(persistence(), 'switchboard_persistence_messages_total', { outcome: 'dead_lettered' });
const redeliveries = () => metric(persistence(), 'switchboard_persistence_redeliveries_total');

async function deadLetters(): Promise<{ session_id: string | null; client_msg_id: string | null; reason: string; payload: string }[]> {
  return withPgClient(
    stack.database.url,
    async (db) => (await db.query('select session_id, client_msg_id, reason, payload from dead_letters order by id')).rows,
  );
}

describe('a message PostgreSQL refuses', () => {
  it('is split out of the batch it came in, dead-lettered, and reported; the rest of the batch is stored', async () => {
    const [session] = sessions;
    if (!session) throw new Error('no session');
    const agents = await createAgents(stack, 3);
    const poisoner = await sockets.authenticated(stack.wsUrl(0), session.customer.token);
    const others = await Promise.all(agents.map((agent) => sockets.authenticated(stack.wsUrl(0), agent.token)));
    for (const socket of [poisoner, ...others]) await socket.request({ type: 'join_session', session_id: session.id });

    // With persistence stopped, the messages wait in the stream: first a good one, then the
    // poison and two more good ones, each sent once the one before is in the stream. The
    // restarted replica takes the first alone (a batch starts as soon as a message arrives) and
    // the other three as one batch, which fails as a whole. Every insert is slowed by 300 ms
    // meanwhile, so that the three have all arrived by the time the first batch ends: once,
    // under CI's load, the poison came alone and nothing was split.
    await stack.persistence[0]?.stop();
    const jsm = await nats.jetstreamManager();
    const waiting = async () => (await jsm.consumers.info(`${stack.prefix.toUpperCase()}_INBOUND`, 'persistence')).num_pending;
    const sendInOrder = async (sends: [TestClient, string, string][]) => {
      const before = await waiting();
      for (const [socket, clientMsgId, content] of sends)
        socket.send({ type: 'send_message', session_id: session.id, content, client_msg_id: clientMsgId });
      await waitFor(async () => (await waiting()) === before + sends.length, 10_000, `${sends.length} more in the stream`);
    };
    const [first, second, third] = others as [TestClient, TestClient, TestClient];
    await sendInOrder([[first, 'batch-good-1', 'fine']]);
    await sendInOrder([[poisoner, 'batch-poison', 'POISON']]);
    await sendInOrder([
      [second, 'batch-good-2', 'fine'],
      [third, 'batch-good-3', 'fine'],
    ]);
    await slowInserts(stack.database.url, 300);
    const replica = await stack.startPersistence();
    let acks: Awaited<ReturnType<TestClient['waitFor']>>[];
    try {
      expect(await poisoner.waitFor((frame) => frame.type === 'error' && frame.client_msg_id === 'batch-poison', 15_000)).toMatchObject({
        code: 'internal',
      });
      acks = await Promise.all(
        (
          [
            [first, 'batch-good-1'],
            [second, 'batch-good-2'],
            [third, 'batch-good-3'],
          ] as const
        ).map(([socket, id]) => socket.waitFor((frame) => frame.type === 'message_ack' && frame.client_msg_id === id, 15_000)),
      );
    } finally {
      await removeSlowInserts(stack.database.url);
    }
    expect(acks.map((ack) => ack.seq).sort()).toEqual([1, 2, 3]);
    expect(replica.logs.some((line) => line.includes('splitting it in halves'))).toBe(true);
    const rows = (await deadLetters()).filter((row) => row.client_msg_id === 'batch-poison');
    expect(rows).toHaveLength(1);
    for (const socket of [poisoner, ...others]) {
      await socket.waitForCount((frame) => frame.type === 'new_message', 3);
      expect(socket.messages(session.id).map((message) => message.seq)).toEqual([1, 2, 3]);
    }
    expect(await redeliveries()).toBe(0);
  });

  it('is dead-lettered once and reported to its sender, while the good messages around it are stored and delivered', async () => {
    const [, session] = sessions;
    if (!session) throw new Error('no session');
    const agents = await createAgents(stack, 3);
    // Good traffic from three agents around the poison, so it shares batches with good messages.
    for (const [index, agent] of agents.entries())
      clients.push(
        new LoadClient({
          name: `good${index}`,
          urls: [stack.wsUrl(0)],
          token: agent.token,
          userId: agent.id,
          join: [session.id],
          sendTo: [session.id],
          ratePerSec: 20,
        }),
      );
    const sender = await sockets.authenticated(stack.wsUrl(0), session.customer.token);
    const senderJoined = await sender.request({ type: 'join_session', session_id: session.id });
    await Promise.all(clients.map((client) => client.start()));
    const deadBefore = await deadLettered();
    for (const client of clients) client.startSending();
    await sleep(500);

    // The customer sends a good message, the poison and another good one without waiting.
    for (const [clientMsgId, content] of [
      ['before-poison', 'fine'],
      ['poison-1', 'POISON'],
      ['after-poison', 'fine too'],
    ])
      sender.send({ type: 'send_message', session_id: session.id, content, client_msg_id: clientMsgId });
    const error = await sender.waitFor((frame) => frame.type === 'error' && frame.client_msg_id === 'poison-1', 15_000);
    expect(error).toMatchObject({ code: 'internal', client_msg_id: 'poison-1' });
    for (const clientMsgId of ['before-poison', 'after-poison'])
      await sender.waitFor((frame) => frame.type === 'message_ack' && frame.client_msg_id === clientMsgId, 15_000);
    await sleep(1_500);
    await Promise.all(clients.map((client) => client.stop()));

    const rows = (await deadLetters()).filter((row) => row.client_msg_id === 'poison-1');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ session_id: String(session.id) });
    expect(rows[0]?.reason).toContain('poison message refused');
    expect(JSON.parse(rows[0]?.payload ?? '{}')).toMatchObject({ content: 'POISON', client_msg_id: 'poison-1' });
    expect((await deadLettered()) - deadBefore).toBe(1);

    // Good messages: all acked, stored once, delivered to every member in order; the poison nowhere.
    // The customer's sends go into the check too (it is no LoadClient).
    await verify(clients, { databaseUrl: stack.database.url });
    const records = LoadClient.records(clients);
    const stored = await readStored(stack.database.url, [session.id]);
    // The customer is a member too: what it received is checked as every other member's is.
    const lastSeq = Math.max(0, ...stored.stored.map((row) => row.seq));
    await sender.waitFor(
      (frame) => frame.type === 'new_message' && (frame.message as { session_id: number; seq: number }).seq === lastSeq,
      10_000,
    );
    const report = checkDelivery({
      ...records,
      transcripts: [
        ...records.transcripts,
        {
          member: 'customer',
          sessionId: session.id,
          afterSeq: Number(senderJoined.last_seq),
          messages: sender
            .messages(session.id)
            .map((message) => ({ seq: message.seq, clientMsgId: message.client_msg_id, messageId: message.id })),
        },
      ],
      attempts: [
        ...records.attempts,
        ...['before-poison', 'poison-1', 'after-poison'].map((clientMsgId, order) => ({
          sessionId: session.id,
          clientMsgId,
          sender: 'customer',
          senderId: session.customer.id,
          order,
        })),
      ],
      acks: [
        ...records.acks,
        ...sender.frames
          .filter((frame) => frame.type === 'message_ack')
          .map((frame) => ({
            sessionId: session.id,
            clientMsgId: String(frame.client_msg_id),
            seq: Number(frame.seq),
            messageId: Number(frame.message_id),
          })),
      ],
      ...stored,
    });
    console.log(`[poison] ${formatReport(report).split('\n')[0]}`);
    expect(report.ok, formatReport(report)).toBe(true);
    expect(report.totals.unacked).toBe(1);
    for (const client of clients) expect(client.failed).toEqual([]);
    expect(sender.messages(session.id).some((message) => message.client_msg_id === 'poison-1')).toBe(false);

    // Nothing loops: no redelivery now or after several ack waits.
    const dead = await deadLettered();
    expect(await redeliveries()).toBe(0);
    await sleep(5_000);
    expect(await redeliveries()).toBe(0);
    expect(await deadLettered()).toBe(dead);

    // Sent again with the same client_msg_id, as a client that had dropped before the error
    // (and missed it) does after reconnecting: within the stream's duplicate window it is taken
    // for a duplicate, and nothing more will come for it. It is answered `internal` at once;
    // before, `unavailable` after the send timeout, again at each retry. Through a gateway whose
    // send timeout outlasts the wait below: only the answer at once can come in time.
    const patient = await stack.startGateway({ SEND_TIMEOUT_MS: '120000' });
    const again = await sockets.authenticated(stack.wsUrl(stack.gateways.indexOf(patient)), session.customer.token);
    again.send({ type: 'send_message', session_id: session.id, content: 'POISON', client_msg_id: 'poison-1' });
    expect(await again.waitFor((frame) => frame.type === 'error' && frame.client_msg_id === 'poison-1', 30_000)).toMatchObject({
      code: 'internal',
      message: 'the message could not be stored',
    });
    expect(await deadLettered()).toBe(dead);
    expect(await redeliveries()).toBe(0);
  });
});

describe('payloads published straight into the inbound stream', () => {
  it('dead-letters one that does not decode, one with a NUL byte and one for a missing session, once each, and moves on', async () => {
    const [, , session] = sessions;
    if (!session) throw new Error('no session');
    const js = nats.jetstream();
    const deadBefore = await deadLettered();
    const reported: string[] = [];
    const subscription = nats.subscribe(`${stack.prefix}.dead`, {
      callback: (_error, msg) => reported.push(new TextDecoder().decode(msg.data)),
    });
    await nats.flush();

    const garbage = 'this is {not json';
    await js.publish(`${stack.prefix}.inbound.${session.id}`, new TextEncoder().encode(garbage), { msgID: 'garbage-1' });
    // PostgreSQL cannot store a NUL in text: the dead letter keeps it as the six characters \u0000.
    await js.publish(`${stack.prefix}.inbound.${session.id}`, new TextEncoder().encode('nul \u0000 {not json'), { msgID: 'garbage-2' });
    const orphan = {
      session_id: 999_999_999,
      client_msg_id: 'orphan-1',
      sender_id: session.customer.id,
      sender_role: 'user',
      content: 'nobody home',
      received_at: new Date().toISOString(),
    };
    await js.publish(`${stack.prefix}.inbound.${orphan.session_id}`, new TextEncoder().encode(JSON.stringify(orphan)), {
      msgID: `${orphan.session_id}:orphan-1`,
    });
    await waitFor(async () => (await deadLettered()) - deadBefore >= 3, 15_000, 'all three to be dead-lettered');

    const rows = await deadLetters();
    const undecodable = rows.filter((row) => row.payload === garbage);
    expect(undecodable).toHaveLength(1);
    expect(undecodable[0]).toMatchObject({ session_id: null, client_msg_id: null });
    expect(rows.filter((row) => row.payload === 'nul \\u0000 {not json')).toHaveLength(1);
    const missing = rows.filter((row) => row.client_msg_id === 'orphan-1');
    expect(missing).toHaveLength(1);
    expect(missing[0]?.reason).toMatch(/does not exist/);
    // The one with a known session and client_msg_id is announced for its sender's gateway.
    await waitFor(() => reported.some((text) => text.includes('orphan-1')), 5_000, 'the dead-letter announcement');

    // Terminated, not retried: the consumer holds nothing, and nothing comes back after several ack waits.
    await sleep(5_000);
    expect((await deadLettered()) - deadBefore).toBe(3);
    expect(await redeliveries()).toBe(0);
    const info = await (await nats.jetstreamManager()).consumers.info(`${stack.prefix.toUpperCase()}_INBOUND`, 'persistence');
    expect(info.num_pending).toBe(0);
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_redelivered).toBe(0);
    subscription.unsubscribe();

    // And the session still works.
    const socket = await sockets.authenticated(stack.wsUrl(0), session.customer.token);
    expect(
      await socket.request({ type: 'send_message', session_id: session.id, content: 'still here', client_msg_id: 'after-garbage' }),
    ).toMatchObject({
      type: 'message_ack',
      seq: 1,
    });
  });
});
