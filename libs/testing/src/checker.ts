import { withPgClient } from './database.js';

/**
 * The delivery checker: compares what clients attempted, what they were acked and what every
 * member received with what PostgreSQL holds, and counts each way the delivery guarantees of
 * the contract (§3) can be broken. A run passes when every counter is zero.
 */

/** A message a client tried to send (once per message, however many times it was resent). */
export interface AttemptRecord {
  sessionId: number;
  clientMsgId: string;
  /** Who sent it: a sender's messages must be stored in `order` (per session). */
  sender: string;
  /** The sender's user id, when known: the stored row must carry it. */
  senderId?: number;
  /** Position in the sender's sequence of sends. */
  order: number;
}

/** A `message_ack` a client received (every one, including repeated acks of one message). */
export interface AckRecord {
  sessionId: number;
  clientMsgId: string;
  seq: number;
  messageId: number;
}

/** One `new_message` as a member received it. */
export interface DeliveredRecord {
  seq: number;
  clientMsgId: string;
  messageId?: number;
}

/** Everything one member received for one session, in arrival order, across its reconnects. */
export interface TranscriptRecord {
  member: string;
  sessionId: number;
  /** The member expects every seq above this one (its first join's `last_seq`, or the session's newest then). */
  afterSeq: number;
  /** How many of `messages` came before the first `joined_session` (a breach of order). */
  beforeJoin?: number;
  messages: DeliveredRecord[];
}

/** A row of `messages`. */
export interface StoredRow {
  sessionId: number;
  seq: number;
  clientMsgId: string;
  senderId: number;
  messageId: number;
}

/** A row of `sessions`: `last_seq` must be the newest stored seq. */
export interface SessionRow {
  sessionId: number;
  lastSeq: number;
}

export interface CheckInput {
  attempts: readonly AttemptRecord[];
  acks: readonly AckRecord[];
  transcripts: readonly TranscriptRecord[];
  stored: readonly StoredRow[];
  sessions?: readonly SessionRow[];
  /** `new_message` frames members received for sessions they never joined: each is a breach. */
  strays?: readonly StrayRecord[];
}

/** A `new_message` a member received for a session it never joined. */
export interface StrayRecord {
  member: string;
  sessionId: number;
  seq: number;
}

export interface CheckCounts {
  /** Acked, but not stored. */
  lost: number;
  /** Stored (or delivered) but never attempted, stored under another sender, or delivered to a member of another session. */
  unexpected: number;
  /** A client_msg_id stored twice in a session, or a member receiving a seq twice. */
  duplicates: number;
  /** A seq missing from 1..n in the database (or `last_seq` not n), or from a member's transcript. */
  gaps: number;
  /** A member received a seq lower than one it had already received, or a message before its `joined_session`. */
  outOfOrder: number;
  /** A sender's acked messages stored in another order than it sent them. */
  senderOrder: number;
  /** An ack whose seq or message id is not the stored row's. */
  ackMismatch: number;
  /** A `new_message` whose client_msg_id or id is not the stored row's for that seq. */
  deliveryMismatch: number;
}

export interface CheckReport {
  ok: boolean;
  counts: CheckCounts;
  totals: {
    sessions: number;
    attempted: number;
    /** Distinct messages acked. */
    acked: number;
    /** Attempted and never acked (given up, rejected or still pending when the run ended). */
    unacked: number;
    stored: number;
    transcripts: number;
    delivered: number;
  };
  /** The first problems found, described, for the failure message. */
  problems: string[];
}

const MAX_PROBLEMS = 40;
const keyOf = (sessionId: number, clientMsgId: string) => `${sessionId}:${clientMsgId}`;

export function checkDelivery(input: CheckInput): CheckReport {
  const counts: CheckCounts = {
    lost: 0,
    unexpected: 0,
    duplicates: 0,
    gaps: 0,
    outOfOrder: 0,
    senderOrder: 0,
    ackMismatch: 0,
    deliveryMismatch: 0,
  };
  const problems: string[] = [];
  const problem = (counter: keyof CheckCounts, text: string, by = 1) => {
    counts[counter] += by;
    if (problems.length < MAX_PROBLEMS) problems.push(`${counter}: ${text}`);
  };

  const sessionIds = new Set<number>([...input.attempts.map((a) => a.sessionId), ...input.transcripts.map((t) => t.sessionId)]);
  const stored = input.stored.filter((row) => sessionIds.has(row.sessionId));

  // The database: one row per (session, client_msg_id), seqs 1..n per session.
  const byKey = new Map<string, StoredRow>();
  const bySeq = new Map<number, Map<number, StoredRow>>();
  for (const row of stored) {
    const key = keyOf(row.sessionId, row.clientMsgId);
    if (byKey.has(key)) problem('duplicates', `client_msg_id ${row.clientMsgId} stored twice in session ${row.sessionId}`);
    else byKey.set(key, row);
    const seqs = bySeq.get(row.sessionId) ?? new Map<number, StoredRow>();
    bySeq.set(row.sessionId, seqs);
    if (seqs.has(row.seq)) problem('duplicates', `seq ${row.seq} stored twice in session ${row.sessionId}`);
    else seqs.set(row.seq, row);
  }
  const maxSeq = new Map<number, number>();
  for (const sessionId of sessionIds) {
    const seqs = bySeq.get(sessionId) ?? new Map<number, StoredRow>();
    const max = Math.max(0, ...seqs.keys());
    maxSeq.set(sessionId, max);
    const missing: number[] = [];
    for (let seq = 1; seq <= max; seq++) if (!seqs.has(seq)) missing.push(seq);
    if (missing.length > 0)
      problem('gaps', `session ${sessionId} has no row for seq ${missing.slice(0, 10).join(', ')} (of 1..${max})`, missing.length);
  }
  for (const session of input.sessions ?? []) {
    if (!sessionIds.has(session.sessionId)) continue;
    const max = maxSeq.get(session.sessionId) ?? 0;
    if (session.lastSeq !== max)
      problem('gaps', `session ${session.sessionId} has last_seq ${session.lastSeq} but its newest row is ${max}`);
  }

  // Clients: what was attempted and acked.
  const attempted = new Map<string, AttemptRecord>();
  for (const attempt of input.attempts) attempted.set(keyOf(attempt.sessionId, attempt.clientMsgId), attempt);
  for (const row of stored) {
    const attempt = attempted.get(keyOf(row.sessionId, row.clientMsgId));
    if (!attempt) problem('unexpected', `session ${row.sessionId} seq ${row.seq} (${row.clientMsgId}) was stored but never sent`);
    else if (attempt.senderId !== undefined && attempt.senderId !== row.senderId)
      problem('unexpected', `${row.clientMsgId} was sent by user ${attempt.senderId} but stored as sent by ${row.senderId}`);
  }
  const ackedKeys = new Set<string>();
  for (const ack of input.acks) {
    const key = keyOf(ack.sessionId, ack.clientMsgId);
    const row = byKey.get(key);
    if (!row) {
      if (!ackedKeys.has(key))
        problem('lost', `${ack.clientMsgId} was acked with seq ${ack.seq} in session ${ack.sessionId} but is not stored`);
    } else if (row.seq !== ack.seq || row.messageId !== ack.messageId)
      problem(
        'ackMismatch',
        `${ack.clientMsgId} was acked as seq ${ack.seq} id ${ack.messageId}, stored as seq ${row.seq} id ${row.messageId}`,
      );
    ackedKeys.add(key);
  }

  // Per-sender order: a sender's acked messages, in the order it sent them, have increasing seqs.
  const bySender = new Map<string, AttemptRecord[]>();
  for (const attempt of input.attempts) {
    const group = `${attempt.sender}@${attempt.sessionId}`;
    const list = bySender.get(group) ?? [];
    list.push(attempt);
    bySender.set(group, list);
  }
  for (const [group, list] of bySender) {
    let highest: { seq: number; clientMsgId: string } | undefined;
    for (const attempt of [...list].sort((a, b) => a.order - b.order)) {
      const key = keyOf(attempt.sessionId, attempt.clientMsgId);
      const row = byKey.get(key);
      if (!ackedKeys.has(key) || !row) continue;
      if (highest && row.seq < highest.seq)
        problem(
          'senderOrder',
          `${group}: ${attempt.clientMsgId} (seq ${row.seq}) was sent after ${highest.clientMsgId} (seq ${highest.seq})`,
        );
      if (!highest || row.seq > highest.seq) highest = { seq: row.seq, clientMsgId: attempt.clientMsgId };
    }
  }

  // Members: each seq above `afterSeq` once, in increasing order, as stored.
  let delivered = 0;
  for (const transcript of input.transcripts) {
    const who = `${transcript.member} in session ${transcript.sessionId}`;
    const seqs = bySeq.get(transcript.sessionId) ?? new Map<number, StoredRow>();
    const seen = new Set<number>();
    let previous = Number.NEGATIVE_INFINITY;
    if (transcript.beforeJoin)
      problem('outOfOrder', `${who} received ${transcript.beforeJoin} message(s) before its joined_session`, transcript.beforeJoin);
    for (const message of transcript.messages) {
      delivered++;
      if (seen.has(message.seq)) problem('duplicates', `${who} received seq ${message.seq} twice`);
      else if (message.seq < previous) problem('outOfOrder', `${who} received seq ${message.seq} after seq ${previous}`);
      seen.add(message.seq);
      previous = Math.max(previous, message.seq);
      const row = seqs.get(message.seq);
      if (!row) problem('unexpected', `${who} received seq ${message.seq}, which is not stored`);
      else if (row.clientMsgId !== message.clientMsgId || (message.messageId !== undefined && message.messageId !== row.messageId))
        problem('deliveryMismatch', `${who} received seq ${message.seq} as ${message.clientMsgId}, stored as ${row.clientMsgId}`);
    }
    const max = maxSeq.get(transcript.sessionId) ?? 0;
    const missing: number[] = [];
    // Seqs missing from the database are counted once, above.
    for (let seq = transcript.afterSeq + 1; seq <= max; seq++) if (seqs.has(seq) && !seen.has(seq)) missing.push(seq);
    if (missing.length > 0) problem('gaps', `${who} never received seq ${missing.slice(0, 10).join(', ')}`, missing.length);
  }

  for (const stray of input.strays ?? [])
    problem('unexpected', `${stray.member} received seq ${stray.seq} of session ${stray.sessionId}, which it never joined`);

  const unacked = [...attempted.keys()].filter((key) => !ackedKeys.has(key)).length;
  return {
    ok: Object.values(counts).every((count) => count === 0),
    counts,
    totals: {
      sessions: sessionIds.size,
      attempted: attempted.size,
      acked: ackedKeys.size,
      unacked,
      stored: stored.length,
      transcripts: input.transcripts.length,
      delivered,
    },
    problems,
  };
}

/** One line of counts and totals, then the problems: for assertion messages and logs. */
export function formatReport(report: CheckReport): string {
  const counts = Object.entries(report.counts)
    .map(([name, count]) => `${name}=${count}`)
    .join(' ');
  const totals = Object.entries(report.totals)
    .map(([name, count]) => `${name}=${count}`)
    .join(' ');
  return [`${report.ok ? 'PASS' : 'FAIL'} ${counts} | ${totals}`, ...report.problems.map((text) => `  ${text}`)].join('\n');
}

/** The stored messages and the sessions' `last_seq` of the given sessions. */
export async function readStored(
  databaseUrl: string,
  sessionIds: readonly number[],
): Promise<{ stored: StoredRow[]; sessions: SessionRow[] }> {
  return withPgClient(databaseUrl, async (client) => {
    const messages = await client.query<{ session_id: string; seq: string; client_msg_id: string; sender_id: string; id: string }>(
      'select session_id, seq, client_msg_id, sender_id, id from messages where session_id = any($1::bigint[]) order by session_id, seq',
      [sessionIds],
    );
    const sessions = await client.query<{ id: string; last_seq: string }>(
      'select id, last_seq from sessions where id = any($1::bigint[])',
      [sessionIds],
    );
    return {
      stored: messages.rows.map((row) => ({
        sessionId: Number(row.session_id),
        seq: Number(row.seq),
        clientMsgId: row.client_msg_id,
        senderId: Number(row.sender_id),
        messageId: Number(row.id),
      })),
      sessions: sessions.rows.map((row) => ({ sessionId: Number(row.id), lastSeq: Number(row.last_seq) })),
    };
  });
}
