import { createSubjects } from '@switchboard/protocol';
import {
  query,
  removeSlowInserts,
  type ServiceProcess,
  type Stack,
  sendReliably,
  slowInserts,
  startStack,
  TEST_NATS_URL,
  type TestClient,
  TestClients,
  waitFor,
} from '@switchboard/testing';
import { connect, type JetStreamManager, type NatsConnection, StorageType } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from './support.js';

/**
 * The inbound stream or its durable consumer deleted under a running persistence (by an operator,
 * a script cleaning up, or lost with a NATS server's store). nats.js goes on asking
 * for the consumer for ever without creating it; persistence must notice, be unready while it
 * cannot consume, create both again with its configuration, and resume: every message acked to
 * its sender stored once, in order, and delivered once.
 */

/** How long a message may take to be stored once the consumer is gone: a few of the sender's attempts. */
const RECOVERY_BOUND_MS = 15_000;

let stack: Stack;
const clients = new TestClients();
let persistence: ServiceProcess;
let nc: NatsConnection;
let jsm: JetStreamManager;
let customer: TestClient;
let agent: TestClient;
/** Joined to the session, sending nothing: what a member sees. */
let observer: TestClient;
let sessionId: number;
/** `client_msg_id`s acked so far, by sender. */
const acked = new Map<TestClient, string[]>();
const readiness: { status: number; consumer?: boolean }[] = [];
let watching = true;
let watcher: Promise<void> | undefined;

async function connectClient(token: string): Promise<TestClient> {
  const client = await clients.authenticated(stack.wsUrl(0), token);
  expect((await client.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');
  return client;
}

/** Sends `count` more messages from `sender` one after another, each until acked; `onAcked` runs after each ack. */
async function send(sender: TestClient, count: number, onAcked: () => Promise<void> | void = () => undefined): Promise<void> {
  const ids = acked.get(sender) ?? [];
  acked.set(sender, ids);
  const name = sender === customer ? 'c' : 'a';
  for (let i = 0; i < count; i++) {
    const clientMsgId = `${name}-${ids.length}`;
    await sendReliably(
      sender,
      { sessionId, clientMsgId, content: `message ${clientMsgId}` },
      { attemptTimeoutMs: 3_000, deadlineMs: RECOVERY_BOUND_MS },
    );
    ids.push(clientMsgId);
    await onAcked();
  }
}

/**
 * Every message acked so far is stored once, each sender's in the order sent, with gapless seqs,
 * and a member got each once, in seq order.
 */
async function expectStoredAndDeliveredOnce(): Promise<void> {
  const rows = await query<{ seq: string; client_msg_id: string }>(
    stack.database.url,
    'select seq, client_msg_id from messages where session_id = $1 order by seq',
    [sessionId],
  );
  const all = [...acked.values()].flat();
  const stored = rows.map((row) => row.client_msg_id);
  expect([...stored].sort()).toEqual([...all].sort());
  expect(rows.map((row) => Number(row.seq))).toEqual(stored.map((_, i) => i + 1));
  for (const ids of acked.values()) expect(stored.filter((id) => ids.includes(id))).toEqual(ids);
  await observer.waitForCount((frame) => frame.type === 'new_message', all.length, RECOVERY_BOUND_MS);
  await sleep(300); // a copy delivered twice would arrive by now
  expect(observer.messages(sessionId).map((message) => message.client_msg_id)).toEqual(stored);
}

beforeAll(async () => {
  stack = await startStack({ gateways: 1, persistence: 1 });
  const [only] = stack.persistence;
  if (!only) throw new Error('no persistence');
  persistence = only;
  nc = await connect({ servers: TEST_NATS_URL });
  jsm = await nc.jetstreamManager();
  const customerUser = await stack.user('user');
  customer = await clients.authenticated(stack.wsUrl(0), customerUser.token);
  sessionId = ((await customer.request({ type: 'create_session' })).session as { id: number }).id;
  expect((await customer.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');
  agent = await connectClient((await stack.user('agent')).token);
  observer = await connectClient((await stack.user('agent')).token);

  watcher = (async () => {
    while (watching) {
      const sample = await fetch(persistence.opsUrl('/readyz'), { signal: AbortSignal.timeout(1_000) }).then(
        async (response) => ({
          status: response.status,
          consumer: ((await response.json()) as { checks: { consumer?: boolean } }).checks.consumer,
        }),
        () => ({ status: 0 }),
      );
      readiness.push(sample);
      await sleep(50);
    }
  })();
}, 60_000);

afterAll(async () => {
  watching = false;
  await watcher;
  persistence?.child.kill('SIGCONT');
  await clients.closeAll();
  await nc?.close();
  await stack?.stop();
});

describe('persistence when its inbound consumer or stream is deleted', () => {
  it('creates the consumer again and stores what is sent after, and what was in flight, once each', async () => {
    const subjects = createSubjects(stack.prefix);
    await send(customer, 3);
    // Commits of 200 ms and two senders: when the consumer goes, a batch is in hand and messages
    // are held behind it, delivered by the consumer that is gone.
    await slowInserts(stack.database.url, 200);
    let sends = 0;
    const deleteAfterFour = async () => {
      if (++sends === 4) await jsm.consumers.delete(subjects.inboundStream, subjects.inboundConsumer);
    };
    try {
      await Promise.all([send(customer, 10, deleteAfterFour), send(agent, 10, deleteAfterFour)]);
    } finally {
      await removeSlowInserts(stack.database.url);
    }
    await expectStoredAndDeliveredOnce();
    expect((await jsm.consumers.info(subjects.inboundStream, subjects.inboundConsumer)).config.durable_name).toBe(subjects.inboundConsumer);
    expect(persistence.logs.some((line) => line.includes('the inbound consumer is gone'))).toBe(true);
  }, 60_000);

  it('is unready while it cannot create the stream again, then creates it and stores what is sent', async () => {
    const subjects = createSubjects(stack.prefix);
    await send(customer, 2);
    // Paused, so that the stream can be deleted and its subjects taken by another stream before
    // persistence can create it again: it stays unable to until that stream is gone.
    persistence.child.kill('SIGSTOP');
    const squatter = `${subjects.inboundStream}_SQUATTER`;
    try {
      await jsm.streams.delete(subjects.inboundStream);
      await jsm.streams.add({ name: squatter, subjects: [subjects.inboundAll], storage: StorageType.Memory });
    } finally {
      persistence.child.kill('SIGCONT');
    }
    const sampled = readiness.length;
    await waitFor(
      () => persistence.logs.some((line) => line.includes('creating the inbound stream and consumer again failed')),
      10_000,
      'persistence to be refused the stream',
    );
    await waitFor(
      () => readiness.slice(sampled).some((sample) => sample.status === 503 && sample.consumer === false),
      10_000,
      '/readyz to report the consumer missing',
    );
    expect(readiness.at(-1)).toEqual({ status: 503, consumer: false });
    await jsm.streams.delete(squatter);
    await waitFor(() => readiness.at(-1)?.status === 200, RECOVERY_BOUND_MS, '/readyz to be 200 again');

    await send(customer, 3);
    await send(agent, 2);
    await expectStoredAndDeliveredOnce();
    expect((await jsm.streams.info(subjects.inboundStream)).config.subjects).toEqual([subjects.inboundAll]);
  }, 60_000);
});
