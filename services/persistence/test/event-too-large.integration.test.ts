import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPersistenceClient, decodeJson, encodeJson } from '@switchboard/bus';
import type { InboundMessage } from '@switchboard/protocol';
import { fillHistory, metric, NatsServer, query, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support.js';

/**
 * A confirmed event NATS refuses after the commit. nats.js throws at once on a payload over the
 * server's max_payload, and a confirmed event is larger than the inbound message's payload (it
 * adds the id, the seq and a wrapper), so a message whose payload just fits is stored and its
 * event refused. The throw skipped the batch's acks: the batch was retried every 2 s for ever,
 * and nothing behind it was stored.
 */

const MAX_PAYLOAD = 8 * 1024;

let nats: NatsServer;
let harness: Harness;

beforeAll(async () => {
  const storeDir = await mkdtemp(join(tmpdir(), 'persistence-max-payload-'));
  const configFile = join(storeDir, 'nats.conf');
  await writeFile(configFile, `max_payload: ${MAX_PAYLOAD}\n`);
  nats = await NatsServer.start(storeDir, ['-c', configFile]);
  harness = await startHarness('persistence_event_too_large', { natsUrl: nats.url });
});

afterAll(async () => {
  await harness?.close();
  await nats?.remove();
});

/** An inbound message whose JSON is exactly `bytes` long. */
function inboundOfSize(sessionId: number, clientMsgId: string, bytes: number): Uint8Array {
  const message: InboundMessage = {
    session_id: sessionId,
    client_msg_id: clientMsgId,
    sender_id: 1,
    sender_role: 'user',
    content: '',
    received_at: new Date().toISOString(),
  };
  const padding = bytes - encodeJson(message).length;
  return encodeJson({ ...message, content: 'x'.repeat(padding) });
}

describe('a confirmed event larger than NATS takes', () => {
  it('is given up and counted, its message acked, and the next message of the session stored', async () => {
    const persistence = await harness.startPersistence();
    const [session = 0] = await harness.createSessions(1);
    const confirmed: { seq: number; client_msg_id: string }[] = [];
    await harness.bus.subscribe(harness.subjects.confirmed(session), (data) => {
      const { message } = decodeJson(data) as { message: { seq: number; client_msg_id: string } };
      confirmed.push({ seq: message.seq, client_msg_id: message.client_msg_id });
    });

    // Exactly max_payload: NATS takes it into the stream (a plain publish, without the
    // Nats-Msg-Id header, which would count against the limit too), and its event is larger.
    const large = inboundOfSize(session, 'large', MAX_PAYLOAD);
    expect(large.length).toBe(MAX_PAYLOAD);
    harness.bus.publish(harness.subjects.inbound(session), large);
    await waitFor(async () => (await harness.stored()).length === 1, 15_000, 'the large message to be stored');

    await harness.publish(session, 'after');
    await waitFor(async () => (await harness.stored()).length === 2, 15_000, 'the message after it to be stored');
    expect(await harness.stored()).toEqual([
      { session_id: session, seq: 1, client_msg_id: 'large' },
      { session_id: session, seq: 2, client_msg_id: 'after' },
    ]);

    // Both acked: the work-queue stream keeps nothing for the consumer.
    await waitFor(() => harness.allAcked(), 15_000, 'both messages to be acked');
    await waitFor(() => confirmed.length === 1, 5_000, 'the confirmed event of the message after it');
    expect(confirmed).toEqual([{ seq: 2, client_msg_id: 'after' }]);
    expect(await metric(persistence, 'switchboard_persistence_event_publish_failures_total', { event: 'confirmed' })).toBe(1);
    expect(await metric(persistence, 'switchboard_persistence_messages_total', { outcome: 'duplicate' })).toBe(0);
    expect(persistence.logs.some((line) => line.includes('NATS refused an event'))).toBe(true);
  }, 60_000);
});

describe('pages of messages under a max_payload smaller than their budget', () => {
  it('are cut to fit in one reply, rather than refused', async () => {
    await harness.startPersistence();
    const [session = 0] = await harness.createSessions(1);
    // 12 messages of 3,000 characters: about 37 KB, where a reply may carry 8 KiB.
    await fillHistory(harness.database.url, { sessionId: session, senderId: 1, content: 'y'.repeat(3_000), count: 12 });
    const client = createPersistenceClient(harness.bus, harness.subjects);
    const replyBytes = (reply: unknown) => encodeJson(reply).length;

    // Before, every answer was `internal`: the reply could not be sent.
    const after = await client.call('messages.after', { session_id: session, after_seq: 0, limit: 500 });
    expect(after.messages.map((message) => message.seq)).toEqual([1, 2]);
    expect(replyBytes(after)).toBeLessThanOrEqual(MAX_PAYLOAD);

    const history = await client.call('messages.history', { session_id: session, limit: 50 });
    expect(history.messages.map((message) => message.seq)).toEqual([11, 12]);
    expect(history.has_more).toBe(true);
    expect(replyBytes(history)).toBeLessThanOrEqual(MAX_PAYLOAD);

    // A customer's 40 sessions with subjects of 200 characters: about 12 KB as one list.
    const customerId = 4_242;
    await query(
      harness.database.url,
      "insert into sessions (customer_id, subject) select $1, repeat('s', 200) from generate_series(1, 40)",
      [customerId],
    );
    const list = await client.call('sessions.list', { customer_id: customerId, limit: 200 });
    expect(list.sessions.length).toBeGreaterThan(10);
    expect(list.sessions.length).toBeLessThan(40);
    expect(replyBytes(list)).toBeLessThanOrEqual(MAX_PAYLOAD);
  }, 60_000);
});
