import {
  type Bus,
  type DurableConsumer,
  type DurableMessage,
  type DurablePull,
  decodeJson,
  encodeJson,
  type InboundStreamSettings,
} from '@switchboard/bus';
import { errorCode, isConnectFailure, isConnectionError, isPassingFailure } from '@switchboard/db';
import type { Logger } from '@switchboard/logging';
import { type InboundMessage, inboundMessageSchema, type Subjects } from '@switchboard/protocol';
import { settlesWithin, untilAborted } from '@switchboard/runtime';
import { type Kysely, sql } from 'kysely';
import type { FaultInjection } from '../config.js';
import type { PersistenceDatabase } from '../db/schema.js';
import { advanceLastSeqs, advanceMessageIds } from '../db/state-repair.js';
import type { PersistenceMetrics } from '../metrics.js';
import { type StoreOutcome, storeBatch } from './store-batch.js';

/** PostgreSQL errors after which the same transaction may succeed if tried again. */
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01', '55P03', '57014']);
const UNIQUE_VIOLATION = '23505';
/** The constraint a copy meets that another replica stored while this batch waited for a lock (see store-batch.ts). */
const COPY_CONSTRAINT = 'messages_session_client_msg_id_key';
/**
 * Unique constraints of `messages` that no message can violate, only the database's state: the
 * identity behind its table (a cut-over by logical replication, which copies no sequences), a
 * session's `last_seq` behind its stored seqs (a partial restore). Taken for a copy, their
 * violations set every message they met aside. Both counters are derived from the rows, and are
 * advanced to them (db/state-repair.ts); a violation the repair cannot clear is retried, as a
 * refusal of the database's own is.
 */
const DATABASE_STATE_CONSTRAINTS: ReadonlySet<string> = new Set(['messages_pkey', 'messages_session_seq_key']);
/** Repairs one batch may make before its violations are only retried: each repair moves a counter forward, so a few always suffice. */
const MAX_STATE_REPAIRS = 3;

const violatedConstraint = (error: unknown) => (error as { constraint?: unknown }).constraint;

/** A unique violation a copy stored meanwhile causes, or (raised naming no constraint) may have. */
function isCopyStored(error: unknown): boolean {
  if (errorCode(error) !== UNIQUE_VIOLATION) return false;
  const constraint = violatedConstraint(error);
  return constraint === undefined || constraint === COPY_CONSTRAINT;
}

/** A unique violation of one of DATABASE_STATE_CONSTRAINTS: retried until an operator repairs the database. */
function isDatabaseStateViolation(error: unknown): boolean {
  const constraint = violatedConstraint(error);
  return errorCode(error) === UNIQUE_VIOLATION && typeof constraint === 'string' && DATABASE_STATE_CONSTRAINTS.has(constraint);
}
/**
 * Retries of a batch after unique violations before it is treated as one that cannot be stored.
 * Counted apart from its other retries: a batch that waited out three lock timeouts or failovers
 * may meet, at its next try, the row its own abandoned statement committed meanwhile, and that
 * message, stored, was set aside as one that could not be.
 */
const MAX_UNIQUE_RETRIES = 3;
/**
 * SQLSTATEs of a statement the database refuses whatever the messages in it: a permission revoked
 * or a table, column or function missing (class 42: a release older or newer than the schema), a
 * catalog or schema missing (3D, 3F), an object in the wrong state (55) or a transaction one
 * (25), a corrupt table or index (XX001, XX002). With bound parameters no message can cause one.
 * Taken for a message's fault, such a refusal split every batch and set every message of the
 * backlog aside in turn; it is retried instead, as an outage is, until an operator fixes the
 * database. So are unique violations of DATABASE_STATE_CONSTRAINTS, when storing. Any other error
 * is taken for a message's (a data exception, another constraint, an exception a trigger raises
 * with any code).
 */
const DATABASE_REFUSAL_SQLSTATE = /^(42|3D|3F|55|25|XX00[12]$)/;
/** Out of memory (53200), a statement cancelled (57014: the server's `statement_timeout`). */
const SIZE_SQLSTATES = new Set(['53200', '57014']);
/** pg's error for a statement unanswered within the query timeout (createDb's `queryTimeoutMs`). */
const QUERY_READ_TIMEOUT = 'Query read timeout';
/**
 * An error a batch may meet for its size rather than for any one message: out of memory, a
 * statement cancelled or unanswered at a timeout, or the connection lost under the statement (a
 * backend the kernel's OOM killer ends, a message past the protocol's 1 GB, which the server
 * answers by closing the connection). Each is also what a server short of memory, a row lock
 * held elsewhere, a stalled connection or a restart gives any statement, so a single message
 * meeting one is retried, and a larger batch is retried whole once. Meeting one again, it is
 * split in halves: retried whole for ever, a batch too large for the server met the same error
 * at every try and held up every message behind it (and, killed by the OOM killer, restarted the
 * whole server at each try). A connection that could not even be opened says nothing of the batch.
 */
function mayBeTooLarge(error: unknown): boolean {
  const code = errorCode(error);
  return (
    (code !== undefined && SIZE_SQLSTATES.has(code)) ||
    (error instanceof Error && error.message === QUERY_READ_TIMEOUT) ||
    (isConnectionError(error) && !isConnectFailure(error))
  );
}
const MAX_RETRY_DELAY_MS = 2_000;
/**
 * How long a stop waits for the batch in hand. A statement can wait far longer (for a row lock
 * held elsewhere, up to the 30 s query timeout), and the process must exit within 30 s of
 * SIGTERM; past this the batch is handed back (nak), ahead of the messages behind it.
 */
const STOP_WAIT_MS = 10_000;
/** How long a stop waits for NATS to answer the question that drops its closed pull (see `naksHeld`). */
const PULL_DROP_WAIT_MS = 2_000;
const PULL_EXPIRES_MS = 30_000;
/** How long a replica that lost its consumer waits before it makes the stream and consumer again. */
const RECREATE_PAUSE_MS = 1_000;

export interface InboundConsumerOptions {
  bus: Bus;
  /**
   * The stream's and consumer's settings: to create them again should either be deleted, and the
   * ack wait, a quarter of which a held message waits before it is kept alive with `working()`.
   */
  inbound: InboundStreamSettings;
  db: Kysely<PersistenceDatabase>;
  subjects: Subjects;
  batchMax: number;
  /** Most bytes of inbound messages in one batch; a message over it is taken alone. */
  batchMaxBytes?: number;
  logger: Logger;
  metrics: PersistenceMetrics;
  /** Test only (FAULT_INJECT): crash points for the fault tests. */
  faultInjection?: FaultInjection;
  /** How long each pull waits on the server: 30 s. */
  pullExpiresMs?: number;
}

export interface InboundConsumer {
  /**
   * Stops fetching, finishes the batch in hand (waiting for it at most 10 s: past that it is
   * handed back to JetStream, to be redelivered), and hands unprocessed messages back too.
   */
  stop(): Promise<void>;
  /**
   * False while the consumer or its stream is missing, from when that is noticed until both
   * are created again and messages can arrive: a readiness check.
   */
  isConsuming(): boolean;
}

interface Decoded {
  msg: DurableMessage;
  input: InboundMessage | undefined;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Waits before retry `attempt` (from 0) of a write the database could not take: from 50 ms, doubling, at most 2 s. */
const retryPause = (attempt: number) => sleep(Math.min(MAX_RETRY_DELAY_MS, 50 * 2 ** attempt));

/** PostgreSQL cannot store NUL in text; a dead letter keeps it as the six characters `\u0000`. */
const storable = (text: string) => text.replaceAll('\u0000', '\\u0000');

/**
 * Errors after which the same write may succeed later: the database unreachable or unable to take
 * writes (read-only, disk full), or no connection to be had for it (a login refused after a
 * password rotation: see `isPassingFailure`), a transaction to run again, or a
 * refusal of the database's own (DATABASE_REFUSAL_SQLSTATE). Such an error says nothing about the
 * messages, which must be kept and never set aside for it.
 */
function isTransient(error: unknown): boolean {
  if (isPassingFailure(error)) return true;
  const code = errorCode(error);
  return code !== undefined && (RETRYABLE_SQLSTATES.has(code) || DATABASE_REFUSAL_SQLSTATE.test(code));
}

/**
 * Consumes the inbound stream through the shared durable consumer, storing what arrives in
 * batches: whatever has arrived while the previous batch committed forms the next one (group
 * commit), so a lone message is stored at once and a burst in few transactions.
 *
 * Order of effects per batch: commit, then publish each confirmed event, then ack. A crash
 * between commit and ack leads to a redelivery, which finds the stored rows and confirms them
 * again with their original ids and seqs; gateways deliver each seq once.
 */
export async function startInboundConsumer(options: InboundConsumerOptions): Promise<InboundConsumer> {
  const { bus, db, subjects, batchMax, batchMaxBytes = Number.POSITIVE_INFINITY, metrics } = options;
  const log = options.logger.child({ module: 'inbound' });
  const pullExpiresMs = options.pullExpiresMs ?? PULL_EXPIRES_MS;
  let source: DurableConsumer = await bus.inboundConsumer();
  /** The pull being read, if any: a stop closes it. */
  let pulling: DurablePull | undefined;
  let consuming = true;

  /**
   * Delivered and not yet taken into a batch, by consumer and stream sequence (`<generation>:<seq>`):
   * a redelivery by the same consumer replaces its earlier copy. A consumer made again delivers
   * under a new generation, since its stream may be new too and number from 1 again: keyed by
   * sequence alone, a new message replaced a different one held, which no stream held any more.
   * A copy of a held message from the new consumer sits beside it instead, and the second one
   * stored is a duplicate.
   */
  const held = new Map<string, DurableMessage>();
  /** Counts the consumers this replica has consumed from: the first, then each one made again. */
  let generation = 0;
  let stopping = false;
  /** Aborted by a stop: the waits below end at it (`untilAborted`). */
  const stopController = new AbortController();
  let worker: Promise<void> | undefined;
  let committed = 0;
  /** The batch being stored. */
  let inHand: DurableMessage[] = [];
  /** When each message in hand or held arrived (performance.now()). */
  const arrivedAt = new WeakMap<DurableMessage, number>();
  /** Messages acked, nak'd or terminated: what a batch that threw has not settled is kept, not dropped. */
  const settled = new WeakSet<DurableMessage>();
  /**
   * Set when stop() returns; the bus closes after it. A batch still running then (stop gave up
   * waiting for it) neither settles nor publishes anything: JetStream redelivers its messages, and
   * should its statement commit after all, the redelivery finds the rows and confirms them.
   */
  let stopped = false;

  /**
   * Every message this replica has held for a quarter of the ack wait, in hand or waiting behind
   * the batch, gets `working()`, so JetStream does not redeliver it: a batch that takes long
   * (PostgreSQL unreachable, a slow commit), or several slow ones in a row, each shorter than
   * that. Keeping only the batch alive let the messages behind it be redelivered after every ack
   * wait of an outage (to this replica or another), each time counting against max_deliver; past
   * it, a message whose replica then restarts is never delivered again.
   */
  const keepAliveMs = Math.max(250, Math.floor(options.inbound.ackWaitMs / 4));
  const keepAlive = setInterval(() => {
    const heldSince = performance.now() - keepAliveMs;
    const keep = (msg: DurableMessage) => {
      if ((arrivedAt.get(msg) ?? heldSince) <= heldSince) msg.working();
    };
    for (const msg of inHand) keep(msg);
    for (const msg of held.values()) keep(msg);
  }, keepAliveMs);
  keepAlive.unref();

  const settle = (msg: DurableMessage, how: (msg: DurableMessage) => void) => {
    if (stopped) return;
    settled.add(msg);
    how(msg);
  };
  /**
   * From a stop's start until the server has dropped the pull the stop closed, naks wait here, in
   * order. NATS (2.9) keeps a closed pull's request until something asks about the consumer, and
   * redelivered the first message handed back to it, to no one: that message waited the ack wait
   * (10 s) while another replica stored the ones handed back after it, and one of them twice.
   */
  let naksHeld: DurableMessage[] | undefined;
  const ack = (msg: DurableMessage) => settle(msg, (m) => m.ack());
  const nak = (msg: DurableMessage) => settle(msg, (m) => (naksHeld ? naksHeld.push(m) : m.nak()));
  const releaseNaks = () => {
    const held = naksHeld ?? [];
    naksHeld = undefined;
    for (const msg of held) msg.nak();
  };

  /**
   * Publishes an event about messages already committed (or dead-lettered). NATS may refuse it
   * at once: nats.js throws when the payload exceeds the server's max_payload, and a confirmed
   * event is larger than the inbound message's payload (it adds the id, the seq, …), or when the
   * connection is closed. Such an event is given up, logged and counted: thrown, it skipped
   * every ack of its batch, which was then retried every 2 s for ever (all duplicates, the same
   * throw), kept alive and never redelivered, and nothing behind it was stored. A confirmed event
   * that never goes out is recovered as a lost one is: the gateways' checks of their sessions'
   * last seqs find the message and fetch it.
   */
  const publishEvent = (event: 'confirmed' | 'dead_letter', subject: string, body: unknown, context: Record<string, unknown>) => {
    try {
      bus.publish(subject, encodeJson(body));
    } catch (error) {
      metrics.publishFailures.inc({ event });
      log.error({ err: error, subject, event, ...context }, 'NATS refused an event; going on without it');
    }
  };

  const publishConfirmed = (outcome: StoreOutcome) => {
    if (outcome.kind === 'rejected' || stopped) return;
    const { message } = outcome;
    publishEvent('confirmed', subjects.confirmed(message.session_id), { message }, { sessionId: message.session_id, seq: message.seq });
  };

  /**
   * Sets a message aside: written to `dead_letters`, announced, and terminated. While PostgreSQL is
   * unreachable or cannot take writes the write is retried like a batch (the keep-alive holds the
   * message meanwhile), so a payload that does not decode is not dropped and redelivered until
   * its delivery limit. Returns true if it handed the message back instead (a stop while the
   * database could not take the write).
   */
  const deadLetter = async (msg: DurableMessage, input: InboundMessage | undefined, reason: string): Promise<boolean> => {
    const row = {
      session_id: input?.session_id ?? null,
      client_msg_id: input ? storable(input.client_msg_id) : null,
      reason: storable(reason),
      payload: storable(new TextDecoder().decode(msg.data)),
      stream_seq: msg.seq,
    };
    let recorded = false;
    for (let attempt = 0; ; attempt++) {
      try {
        // Once per message: a copy delivered again after its row was written (the replica died
        // before the terminate, or the consumer was made again) finds the row, and is only
        // terminated. Before, each such delivery added a row and counted a dead letter more.
        // The payload (up to NATS's max_payload) is sent once, and compared where it lies.
        const { numAffectedRows } = await sql`
          with letter (session_id, client_msg_id, reason, payload, stream_seq) as (
            values (${row.session_id}::bigint, ${row.client_msg_id}::text, ${row.reason}::text, ${row.payload}::text, ${row.stream_seq}::bigint)
          )
          insert into dead_letters (session_id, client_msg_id, reason, payload, stream_seq)
          select * from letter
          where not exists (select 1 from dead_letters d join letter l on d.stream_seq = l.stream_seq and d.payload = l.payload)
        `.execute(db);
        recorded = numAffectedRows === undefined || numAffectedRows > 0n;
        break;
      } catch (error) {
        if (!isTransient(error)) throw error;
        if (stopping) {
          nak(msg);
          return true;
        }
        await retryPause(attempt);
      }
    }
    if (stopped) return false;
    if (input)
      publishEvent(
        'dead_letter',
        subjects.deadLetters,
        { session_id: input.session_id, client_msg_id: input.client_msg_id, reason },
        { sessionId: input.session_id, streamSeq: msg.seq },
      );
    settle(msg, (m) => m.term());
    if (!recorded) {
      log.warn(
        { streamSeq: msg.seq, sessionId: input?.session_id },
        'inbound message delivered again after its dead letter was written; terminated',
      );
      return false;
    }
    metrics.messages.inc({ outcome: 'dead_lettered' });
    log.error({ streamSeq: msg.seq, sessionId: input?.session_id, reason }, 'inbound message dead-lettered');
    return false;
  };

  /**
   * Advances the counter a violation of DATABASE_STATE_CONSTRAINTS names, for the batch's
   * sessions: true if it was behind and is no longer, so that the batch can be tried again at
   * once. Logged as an error: the database was restored or cut over without its counters, which
   * an operator should know of. Before, storage stopped on every replica that took one of that
   * session's messages, until an operator repaired it.
   */
  const repairDatabaseState = async (error: unknown, sessionIds: number[]): Promise<boolean> => {
    const constraint = violatedConstraint(error) === 'messages_pkey' ? 'messages_pkey' : 'messages_session_seq_key';
    try {
      if (constraint === 'messages_pkey') {
        const advancedTo = await advanceMessageIds(db);
        if (advancedTo === undefined) return false;
        log.error(
          { constraint, advancedTo },
          "the messages' id sequence was behind the stored messages (a cut-over?); advanced it to them",
        );
      } else {
        const sessions = await advanceLastSeqs(db, sessionIds);
        if (sessions.length === 0) return false;
        log.error(
          { constraint, sessions },
          "sessions' last_seq was behind their stored messages (a partial restore?); advanced it to them",
        );
      }
    } catch (repairError) {
      log.warn({ err: repairError, constraint }, 'repairing the database state failed; retrying the batch');
      return false;
    }
    metrics.stateRepairs.inc({ constraint });
    return true;
  };

  /** Stores a batch's messages, then sets aside those that do not decode: they must not hold the others up. */
  const processBatch = async (batch: Decoded[]): Promise<void> => {
    const valid = batch.filter((item): item is Decoded & { input: InboundMessage } => item.input !== undefined);
    if (valid.length > 0) await storeValid(valid);
    for (const item of batch) if (!item.input) await deadLetter(item.msg, undefined, 'payload is not a valid inbound message');
  };

  /**
   * Stores decoded messages in one statement, retrying while PostgreSQL is unreachable or cannot
   * take writes (keeping the messages' ack deadlines alive, so they are neither redelivered nor
   * overtaken by later ones). A batch that failed for one of its messages, or twice in a row for
   * what may be its size, is split in halves, stored in order, down to the message that cannot
   * be stored, which is set aside: a message among 500 costs about 20 statements, not 500.
   * Returns true if it handed messages back (a stop) rather than settle them all.
   */
  const storeValid = async (valid: (Decoded & { input: InboundMessage })[], splitForSize = false): Promise<boolean> => {
    let outcomes: StoreOutcome[] | undefined;
    let uniqueViolations = 0;
    let repairs = 0;
    /**
     * Errors of `mayBeTooLarge` met: the first is retried whole, as a lock wait or a lost
     * connection may be all it was, unless this is the half of a batch split for its size.
     */
    let sizeFailures = splitForSize ? 1 : 0;
    for (let attempt = 0; outcomes === undefined; attempt++) {
      const started = performance.now();
      try {
        outcomes = await storeBatch(
          db,
          valid.map((item) => item.input),
        );
        metrics.commitSeconds.observe((performance.now() - started) / 1000);
        metrics.batchSize.observe(valid.length);
        committed++;
        if (committed === options.faultInjection?.exitAfterCommit) {
          // Test only: die between the commit and the confirmed events and acks, the window the
          // redelivery-as-duplicate path exists for. SIGKILL, so nothing else runs.
          log.warn({ batch: committed }, 'FAULT_INJECT: killing the process after a commit');
          process.kill(process.pid, 'SIGKILL');
        }
      } catch (error) {
        if (
          isDatabaseStateViolation(error) &&
          repairs++ < MAX_STATE_REPAIRS &&
          (await repairDatabaseState(error, [...new Set(valid.map((item) => item.input.session_id))]))
        ) {
          metrics.storeRetries.inc();
          continue;
        }
        const tooLarge = valid.length > 1 && mayBeTooLarge(error) && ++sizeFailures > 1;
        if (
          !tooLarge &&
          (isTransient(error) || isDatabaseStateViolation(error) || (isCopyStored(error) && ++uniqueViolations <= MAX_UNIQUE_RETRIES))
        ) {
          metrics.storeRetries.inc();
          if (attempt === 0 || attempt % 20 === 0)
            log.warn({ err: error, batch: valid.length, attempt }, 'storing a batch failed; retrying');
          if (stopping) {
            // Hand the batch back rather than hold up the shutdown.
            for (const item of valid) nak(item.msg);
            return true;
          }
          // Meanwhile the keep-alive above holds the messages' ack deadlines.
          await retryPause(attempt);
          continue;
        }
        if (valid.length > 1) {
          const reason = tooLarge ? 'size' : 'message';
          metrics.batchSplits.inc({ reason });
          log.warn({ err: error, batch: valid.length, reason }, 'a batch could not be stored; splitting it in halves');
          const middle = Math.ceil(valid.length / 2);
          // Once a half is handed back, or a stop has begun, the rest is handed back unbegun: stored
          // after a message handed back, a later message of its session would take an earlier seq.
          let handedBack = false;
          for (const half of [valid.slice(0, middle), valid.slice(middle)]) {
            if (handedBack || stopping) {
              for (const item of half) nak(item.msg);
              handedBack = true;
            } else handedBack = await storeValid(half, tooLarge);
          }
          return handedBack;
        }
        const [only] = valid;
        return only ? deadLetter(only.msg, only.input, (error as Error).message ?? String(error)) : false;
      }
    }

    const rejected: { item: Decoded & { input: InboundMessage }; reason: string }[] = [];
    for (const [index, outcome] of outcomes.entries()) {
      const item = valid[index];
      if (!item) continue;
      if (outcome.kind === 'rejected') rejected.push({ item, reason: outcome.reason });
      else {
        metrics.messages.inc({ outcome: outcome.kind });
        publishConfirmed(outcome);
      }
    }
    // Acks follow the confirmed events on the same connection, so they reach the server after them.
    for (const [index, outcome] of outcomes.entries()) {
      const msg = valid[index]?.msg;
      if (msg && outcome.kind !== 'rejected') ack(msg);
    }
    let handedBack = false;
    for (const { item, reason } of rejected) if (await deadLetter(item.msg, item.input, reason)) handedBack = true;
    return handedBack;
  };

  const takeBatch = (): Decoded[] => {
    const batch: Decoded[] = [];
    let bytes = 0;
    for (const [key, msg] of held) {
      if (batch.length >= batchMax || (batch.length > 0 && bytes + msg.data.length > batchMaxBytes)) break;
      bytes += msg.data.length;
      held.delete(key);
      const parsed = inboundMessageSchema.safeParse(decodeJson(msg.data));
      batch.push({ msg, input: parsed.success ? parsed.data : undefined });
    }
    return batch;
  };

  /**
   * Takes batches while messages are held. A batch whose processing threw (a dead letter that
   * could not be written, say) keeps what it had not settled in hand, and that is taken again,
   * before anything newer, after a pause. Dropped, those messages came back only after the ack
   * wait, each time using up a delivery, and behind later messages of their sessions.
   */
  const work = async () => {
    let unsettled: Decoded[] = [];
    while ((unsettled.length > 0 || held.size > 0) && !stopping) {
      const batch = unsettled.length > 0 ? unsettled : takeBatch();
      unsettled = [];
      inHand = batch.map((item) => item.msg);
      try {
        await processBatch(batch);
      } catch (error) {
        if (stopped) return;
        unsettled = batch.filter((item) => !settled.has(item.msg));
        log.error({ err: error, unsettled: unsettled.length }, 'processing a batch failed; trying its unsettled messages again');
        // Still in hand during the pause, so the keep-alive covers them.
        if (!stopping) await sleep(MAX_RETRY_DELAY_MS);
      } finally {
        inHand = [];
        wakePump();
      }
    }
    // Stopping: hand back what a batch that threw left unsettled, as stop() does the held messages.
    for (const item of unsettled) nak(item.msg);
  };

  const kick = () => {
    worker ??= work().finally(() => {
      worker = undefined;
      if (held.size > 0 && !stopping) kick();
    });
  };

  /** Resolved at the end of each batch and at a stop, then replaced: the pump's backpressure waits for it. */
  let resolveWake = () => {};
  let pumpWake = new Promise<void>((resolve) => {
    resolveWake = resolve;
  });
  const wakePump = () => {
    resolveWake();
    pumpWake = new Promise<void>((resolve) => {
      resolveWake = resolve;
    });
  };

  /**
   * The most messages held, waiting for a batch, with those asked for and not yet come. The pump
   * asks only for what fits, and takes in every message as it comes, so each is kept alive from
   * the moment it arrives until it is settled, however long the batches ahead of it take.
   */
  const capacity = batchMax * 6;
  /** The most one pull asks for: the consumer's replicas share what the stream holds between their pulls. */
  const pullMax = batchMax * 2;

  /** Waits until there is room for another pull (after a batch ends), or a stop. */
  const room = async () => {
    while (held.size >= capacity && !stopping) await pumpWake;
  };

  /** Pulls from `from` whenever there is room, until a stop. Throws when the consumer is gone. */
  const take = async (from: DurableConsumer): Promise<void> => {
    for (;;) {
      await room();
      if (stopping) return;
      const started = performance.now();
      let taken = 0;
      pulling = from.fetch({ maxMessages: Math.min(pullMax, capacity - held.size), expiresMs: pullExpiresMs });
      try {
        for await (const msg of pulling) {
          taken++;
          if (msg.redelivered) metrics.redeliveries.inc();
          held.set(`${generation}:${msg.seq}`, msg);
          arrivedAt.set(msg, performance.now());
          kick();
        }
      } finally {
        pulling = undefined;
      }
      if (stopping) return;
      // A pull that ended early with nothing (NATS could not take it) is not sent again at once.
      if (taken === 0 && performance.now() - started < pullExpiresMs / 2) await untilAborted(sleep(1_000), stopController.signal);
    }
  };

  /**
   * Creates the stream and the consumer again, as at start and with the same settings, retrying
   * with backoff until it can consume (or a stop). What the replica holds meanwhile is still
   * stored; the new consumer delivers it again, and it is found stored. Every call starts with
   * RECREATE_PAUSE_MS; `firstAttempt` above 0 (a consumer lost again soon after it was made)
   * adds the backoff of that attempt.
   */
  const consumeAgain = async (firstAttempt: number): Promise<DurableConsumer | undefined> => {
    // Not at once: a stream deleted a moment ago may still be torn down on the server, and one
    // made again under its name within milliseconds was seen (NATS 2.9.10) to keep what was
    // published to it from its new consumer, which then delivered nothing.
    await untilAborted(sleep(RECREATE_PAUSE_MS), stopController.signal);
    for (let attempt = firstAttempt; ; attempt++) {
      if (attempt > 0) await untilAborted(retryPause(attempt - 1), stopController.signal);
      if (stopping) return undefined;
      try {
        const opening = bus.ensureInboundStream(options.inbound).then(() => bus.inboundConsumer());
        // A stop does not wait for NATS to answer: each request may take seconds.
        opening.catch(() => undefined);
        const again = await untilAborted(opening, stopController.signal);
        if (again && !stopping) return again;
      } catch (error) {
        if (!stopping && (attempt === firstAttempt || attempt % 20 === 0))
          log.warn({ err: error, attempt }, 'creating the inbound stream and consumer again failed; retrying');
      }
      if (stopping) return undefined;
    }
  };

  /**
   * Pulls until a stop. nats.js retries a deleted consumer (or stream) for ever without creating
   * it, so a replica went on, ready, storing nothing, until restarted: a consumer found gone is
   * made again. Meanwhile the replica is not ready.
   */
  const pump = (async () => {
    /** Losses each within a minute of the last recovery: a consumer failing again at once is not made again at once. */
    let quickLosses = 0;
    let recoveredAt = Number.NEGATIVE_INFINITY;
    for (;;) {
      try {
        await take(source);
        return;
      } catch (error) {
        if (stopping) throw error;
        log.error({ err: error }, 'the inbound consumer is gone; creating it and its stream again');
      }
      consuming = false;
      quickLosses = performance.now() - recoveredAt < 60_000 ? quickLosses + 1 : 0;
      const again = await consumeAgain(quickLosses);
      if (!again) return;
      source = again;
      generation++;
      consuming = true;
      recoveredAt = performance.now();
      log.info('consuming the inbound stream again');
    }
  })();

  return {
    isConsuming: () => consuming,
    async stop() {
      stopping = true;
      naksHeld = [];
      stopController.abort();
      wakePump();
      await pulling?.close();
      await pump.catch((error: unknown) => log.warn({ err: error }, 'consumer ended with an error'));
      // Asking about the consumer makes NATS drop the pull just closed (see `naksHeld`).
      if (!(await settlesWithin(bus.inboundStats(), PULL_DROP_WAIT_MS)))
        log.warn({ waitedMs: PULL_DROP_WAIT_MS }, 'NATS did not answer about the consumer; handing messages back all the same');
      releaseNaks();
      if (worker && !(await settlesWithin(worker, STOP_WAIT_MS))) {
        log.warn(
          { batch: inHand.length, waitedMs: STOP_WAIT_MS },
          'the batch in hand did not finish in time; handing it back to be redelivered',
        );
        // Handed back first: its messages come before the held ones of their sessions.
        for (const msg of inHand) nak(msg);
      }
      for (const msg of held.values()) nak(msg);
      held.clear();
      // Only now: while the batch in hand was waited for (up to STOP_WAIT_MS, longer than an ack
      // wait of 2 s), its messages and those held were redelivered to other replicas, and the
      // naks above, for deliveries already outdated, made them redelivered once more.
      clearInterval(keepAlive);
      stopped = true;
    },
  };
}
