import { encodeJson } from '@switchboard/bus';
import type { InboundMessage } from '@switchboard/protocol';
import { waitFor } from '@switchboard/testing';
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
