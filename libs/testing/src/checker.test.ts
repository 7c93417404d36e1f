import { describe, expect, it } from 'vitest';
import { type AckRecord, type CheckInput, checkDelivery, formatReport, type StoredRow, type TranscriptRecord } from './checker.js';

/** A clean run: two senders, one session, four messages, two members who saw everything. */
function cleanRun(): CheckInput & { acks: AckRecord[]; stored: StoredRow[]; transcripts: TranscriptRecord[] } {
  const sent = [
    { sender: 'a', clientMsgId: 'a-0', order: 0, senderId: 1 },
    { sender: 'b', clientMsgId: 'b-0', order: 0, senderId: 2 },
    { sender: 'a', clientMsgId: 'a-1', order: 1, senderId: 1 },
    { sender: 'b', clientMsgId: 'b-1', order: 1, senderId: 2 },
  ];
  const stored = sent.map((message, index) => ({
    sessionId: 7,
    seq: index + 1,
    clientMsgId: message.clientMsgId,
    senderId: message.senderId,
    messageId: 100 + index,
  }));
  const transcript = (member: string): TranscriptRecord => ({
    member,
    sessionId: 7,
    afterSeq: 0,
    messages: stored.map((row) => ({ seq: row.seq, clientMsgId: row.clientMsgId, messageId: row.messageId })),
  });
  return {
    attempts: sent.map((message) => ({ sessionId: 7, ...message })),
    acks: stored.map((row) => ({ sessionId: 7, clientMsgId: row.clientMsgId, seq: row.seq, messageId: row.messageId })),
    stored,
    sessions: [{ sessionId: 7, lastSeq: 4 }],
    transcripts: [transcript('m1'), transcript('m2')],
  };
}

const nonZero = (input: CheckInput) => {
  const report = checkDelivery(input);
  return Object.fromEntries(Object.entries(report.counts).filter(([, count]) => count > 0));
};

describe('checkDelivery', () => {
  it('passes a clean run', () => {
    const report = checkDelivery(cleanRun());
    expect(report.ok).toBe(true);
    expect(report.totals).toMatchObject({ sessions: 1, attempted: 4, acked: 4, unacked: 0, stored: 4, transcripts: 2, delivered: 8 });
    expect(formatReport(report)).toMatch(/^PASS lost=0 /);
  });

  it('counts an acked message that is not stored as lost', () => {
    const run = cleanRun();
    run.stored.splice(3, 1);
    run.sessions = [{ sessionId: 7, lastSeq: 3 }];
    for (const transcript of run.transcripts) transcript.messages.splice(3, 1);
    expect(nonZero(run)).toEqual({ lost: 1 });
  });

  it('counts an acked message missing from the middle of a session as lost, and the hole it leaves in the seqs as a gap', () => {
    const run = cleanRun();
    run.stored.splice(1, 1);
    for (const transcript of run.transcripts) transcript.messages.splice(1, 1);
    expect(nonZero(run)).toEqual({ lost: 1, gaps: 1 });
  });

  it('counts a message delivered to a member of another session as unexpected', () => {
    const run = cleanRun();
    run.strays = [{ member: 'm1', sessionId: 8, seq: 1 }];
    const report = checkDelivery(run);
    expect(nonZero(run)).toEqual({ unexpected: 1 });
    expect(report.problems).toEqual(['unexpected: m1 received seq 1 of session 8, which it never joined']);
  });

  it('counts a stored message nobody sent as unexpected', () => {
    const run = cleanRun();
    run.stored.push({ sessionId: 7, seq: 5, clientMsgId: 'ghost', senderId: 1, messageId: 200 });
    run.sessions = [{ sessionId: 7, lastSeq: 5 }];
    for (const transcript of run.transcripts) transcript.messages.push({ seq: 5, clientMsgId: 'ghost', messageId: 200 });
    expect(nonZero(run)).toEqual({ unexpected: 1 });
  });

  it('counts a message stored under another sender as unexpected', () => {
    const run = cleanRun();
    run.stored[0] = { ...(run.stored[0] as StoredRow), senderId: 99 };
    expect(nonZero(run)).toEqual({ unexpected: 1 });
  });

  it('counts a member receiving a seq that is not stored as unexpected', () => {
    const run = cleanRun();
    run.transcripts[0]?.messages.push({ seq: 9, clientMsgId: 'phantom' });
    expect(nonZero(run)).toEqual({ unexpected: 1 });
  });

  it('counts a client_msg_id stored twice as a duplicate', () => {
    const run = cleanRun();
    run.stored.push({ sessionId: 7, seq: 5, clientMsgId: 'a-1', senderId: 1, messageId: 200 });
    run.sessions = [{ sessionId: 7, lastSeq: 5 }];
    for (const transcript of run.transcripts) transcript.messages.push({ seq: 5, clientMsgId: 'a-1', messageId: 200 });
    expect(nonZero(run)).toEqual({ duplicates: 1 });
  });

  it('counts a member receiving a seq twice as a duplicate', () => {
    const run = cleanRun();
    const [first] = run.transcripts;
    first?.messages.push({ ...(first.messages[3] as { seq: number; clientMsgId: string }) });
    expect(nonZero(run)).toEqual({ duplicates: 1 });
  });

  it('counts a seq missing from the database as a gap', () => {
    const run = cleanRun();
    // Seq 3 skipped: the last two messages got 4 and 5.
    for (const row of run.stored.slice(2)) row.seq += 1;
    for (const ack of run.acks.slice(2)) ack.seq += 1;
    for (const transcript of run.transcripts) for (const message of transcript.messages.slice(2)) message.seq += 1;
    run.sessions = [{ sessionId: 7, lastSeq: 5 }];
    expect(nonZero(run)).toEqual({ gaps: 1 });
  });

  it("counts a session's last_seq that is not its newest row as a gap", () => {
    const run = cleanRun();
    run.sessions = [{ sessionId: 7, lastSeq: 6 }];
    expect(nonZero(run)).toEqual({ gaps: 1 });
  });

  it("counts seqs missing from a member's transcript as gaps, from its first join on", () => {
    const run = cleanRun();
    const [first, second] = run.transcripts;
    first?.messages.splice(1, 2);
    if (second) {
      // Joined after seq 2: only 3 and 4 are expected.
      second.afterSeq = 2;
      second.messages.splice(0, 2);
    }
    expect(nonZero(run)).toEqual({ gaps: 2 });
  });

  it('counts a member receiving seqs out of order', () => {
    const run = cleanRun();
    const messages = run.transcripts[0]?.messages ?? [];
    [messages[1], messages[2]] = [messages[2] as (typeof messages)[number], messages[1] as (typeof messages)[number]];
    expect(nonZero(run)).toEqual({ outOfOrder: 1 });
  });

  it('counts messages a member received before its joined_session as out of order', () => {
    const run = cleanRun();
    const member = run.transcripts[0];
    if (member) member.beforeJoin = 2;
    expect(nonZero(run)).toEqual({ outOfOrder: 2 });
  });

  it("counts a sender's messages stored out of its sending order", () => {
    const run = cleanRun();
    // a-1 was stored before a-0.
    const rows = run.stored;
    const a0 = rows[0] as StoredRow;
    const a1 = rows[2] as StoredRow;
    [a0.clientMsgId, a1.clientMsgId] = [a1.clientMsgId, a0.clientMsgId];
    for (const ack of run.acks) {
      if (ack.clientMsgId === 'a-0') Object.assign(ack, { seq: 3, messageId: a1.messageId });
      else if (ack.clientMsgId === 'a-1') Object.assign(ack, { seq: 1, messageId: a0.messageId });
    }
    for (const transcript of run.transcripts)
      transcript.messages = rows.map((row) => ({ seq: row.seq, clientMsgId: row.clientMsgId, messageId: row.messageId }));
    expect(nonZero(run)).toEqual({ senderOrder: 1 });
  });

  it('ignores the order of messages a sender never got acked', () => {
    const run = cleanRun();
    const rows = run.stored;
    [(rows[0] as StoredRow).clientMsgId, (rows[2] as StoredRow).clientMsgId] = ['a-1', 'a-0'];
    run.acks = run.acks.filter((ack) => ack.clientMsgId !== 'a-0' && ack.clientMsgId !== 'a-1');
    for (const transcript of run.transcripts)
      transcript.messages = rows.map((row) => ({ seq: row.seq, clientMsgId: row.clientMsgId, messageId: row.messageId }));
    const report = checkDelivery(run);
    expect(report.ok).toBe(true);
    expect(report.totals.unacked).toBe(2);
  });

  it('counts an ack whose seq or id differs from the stored row as a mismatch', () => {
    const run = cleanRun();
    run.acks.push({ sessionId: 7, clientMsgId: 'b-1', seq: 5, messageId: 103 });
    run.acks.push({ sessionId: 7, clientMsgId: 'a-1', seq: 3, messageId: 999 });
    expect(nonZero(run)).toEqual({ ackMismatch: 2 });
  });

  it('counts a new_message that is not what is stored under its seq as a delivery mismatch', () => {
    const run = cleanRun();
    const message = run.transcripts[1]?.messages[0];
    if (message) message.clientMsgId = 'b-1';
    expect(nonZero(run)).toEqual({ deliveryMismatch: 1 });
  });

  it('only looks at the sessions the run used', () => {
    const run = cleanRun();
    run.stored.push({ sessionId: 8, seq: 3, clientMsgId: 'elsewhere', senderId: 5, messageId: 300 });
    expect(checkDelivery(run).ok).toBe(true);
  });

  it('describes what it found', () => {
    const run = cleanRun();
    run.stored.splice(3, 1);
    const text = formatReport(checkDelivery(run));
    expect(text).toMatch(/^FAIL lost=1/);
    expect(text).toContain('b-1 was acked with seq 4 in session 7 but is not stored');
  });
});
