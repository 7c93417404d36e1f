import { query, refusePoison, TEST_NATS_URL, waitFor } from '@switchboard/testing';
import { connect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support.js';

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness('persistence_dead_letter_once');
  // Started once for its migrations and stream.
  await (await harness.startPersistence()).stop();
  await refusePoison(harness.database.url);
});

afterAll(async () => {
  await harness?.close();
});

/** The inbound stream's last message on a session's subject, as persistence reads it. */
async function lastInbound(sessionId: number): Promise<{ seq: number; payload: string }> {
  const nc = await connect({ servers: TEST_NATS_URL });
  try {
    const jsm = await nc.jetstreamManager();
    const subjects = harness.subjects;
    const stored = await jsm.streams.getMessage(subjects.inboundStream, { last_by_subj: subjects.inbound(sessionId) });
    return { seq: stored.seq, payload: new TextDecoder().decode(stored.data) };
  } finally {
    await nc.close();
  }
}

describe('a message set aside that comes back', () => {
  it('is recorded once: a copy delivered again after its dead letter was written is only terminated', async () => {
    const [session = 0] = await harness.createSessions(1);
    await harness.publish(session, 'poisoned', 'POISON');
    // As a replica that died between writing the row and terminating the message left it.
    const { seq, payload } = await lastInbound(session);
    await query(
      harness.database.url,
      'insert into dead_letters (session_id, client_msg_id, reason, payload, stream_seq) values ($1, $2, $3, $4, $5)',
      [session, 'poisoned', 'poison message refused by a trigger', payload, seq],
    );
    const persistence = await harness.startPersistence();
    await waitFor(() => harness.allAcked(), 15_000, 'the message to be settled');
    // Before: a second row, and a second dead letter counted and announced.
    expect(await harness.deadLetters()).toBe(1);
    expect(persistence.logs.some((line) => line.includes('delivered again after its dead letter was written'))).toBe(true);

    // Another message of the same session is set aside as before.
    await harness.publish(session, 'poisoned-too', 'POISON');
    await waitFor(async () => (await harness.deadLetters()) === 2, 15_000, 'the second dead letter');
    await persistence.stop();
  }, 60_000);
});
