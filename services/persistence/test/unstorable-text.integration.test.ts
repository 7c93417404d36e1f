import { decodeJson, encodeJson } from '@switchboard/bus';
import { busErrorSchema, type InboundMessage } from '@switchboard/protocol';
import { query, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support.js';

/**
 * An inbound message with text PostgreSQL stores otherwise than sent, published straight into
 * the stream (the gateway refuses it at its edge). A lone surrogate in its client_msg_id was
 * stored as U+FFFD; the row then matched no key of the batch, and the message was dead-lettered
 * as well: stored, and its sender told it was not.
 */

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness('persistence_unstorable_text');
});

afterAll(async () => {
  await harness?.close();
});

describe('an inbound message with a lone surrogate', () => {
  it('is refused without being stored, and the next message of its session is stored', async () => {
    await harness.startPersistence();
    const [session = 0] = await harness.createSessions(1);
    const unstorable: InboundMessage = {
      session_id: session,
      client_msg_id: 'lone-\ud800',
      sender_id: 1,
      sender_role: 'user',
      content: 'a lone surrogate in its id',
      received_at: new Date().toISOString(),
    };
    harness.bus.publish(harness.subjects.inbound(session), encodeJson(unstorable));
    await harness.publish(session, 'after');

    await waitFor(async () => (await harness.stored()).length >= 1 && (await harness.deadLetters()) >= 1, 15_000, 'both handled');
    await waitFor(() => harness.allAcked(), 15_000, 'both settled');
    expect(await harness.stored()).toEqual([{ session_id: session, seq: 1, client_msg_id: 'after' }]);
    expect(await harness.deadLetters()).toBe(1);
  }, 60_000);
});

/**
 * The same text in requests from another NATS client than a gateway (which refuses it at its
 * edge): a NUL failed the statement, which was answered `internal` (a bug, not to be retried)
 * and logged as an error; a lone surrogate in a subject was stored as U+FFFD.
 */
describe('a request with text PostgreSQL cannot store as sent', () => {
  const ask = async (endpoint: 'sessions.create' | 'messages.lookup', body: unknown) =>
    decodeJson(await harness.bus.request(harness.subjects.persistence(endpoint), encodeJson(body), 10_000));

  beforeAll(async () => {
    await harness.startPersistence();
  });

  it.each([
    ['a session subject with a NUL', 'sessions.create', { customer_id: 1, subject: 'a\u0000b' }],
    ['a session subject with a lone surrogate', 'sessions.create', { customer_id: 1, subject: 'lone-\ud800' }],
    ['a looked-up client_msg_id with a NUL', 'messages.lookup', { session_id: 1, client_msg_id: 'a\u0000b' }],
  ] as const)(
    'is answered invalid for %s, and nothing is stored',
    async (_case, endpoint, body) => {
      const sessionsBefore = await query(harness.database.url, 'select id from sessions');
      const reply = busErrorSchema.parse(await ask(endpoint, body));
      expect(reply.error.code).toBe('invalid');
      expect(await query(harness.database.url, 'select id from sessions')).toEqual(sessionsBefore);
    },
    60_000,
  );
});
