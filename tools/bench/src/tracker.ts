import { type EventSink, indexOfClientMsgId, scheduledMsOf } from './driver.js';
import { type Histogram, newHistogram, recordMs } from './histogram.js';
import type { Plan } from './plan.js';

const ACK_NONE = 0;
const ACK_OK = 1;
const ACK_ERROR = 2;

/** Counters that only grow; a phase reports the difference between two snapshots. */
export interface Counters {
  sent: number;
  acked: number;
  errors: number;
  delivered: number;
  /** Deliveries past one per member: a repeat, or a delivery to a connection outside the message's session. */
  duplicates: number;
  outOfOrder: number;
  /** Deliveries whose seq did not follow the member's previous one (Switchboard numbers messages). */
  seqGaps: number;
  seqRegressions: number;
  /** Frames the bench could not attribute to a message it sent. */
  unknown: number;
  /** Connections closed under load. */
  closed: number;
}

/**
 * Every message the bench sent, in typed arrays indexed by its number `g`: when it was
 * scheduled, to which session, by whom, whether it was acked and which members got it. From
 * that: latencies (HdrHistograms), losses, duplicates and out-of-order deliveries.
 */
export class Tracker implements EventSink {
  private capacity = 0;
  private scheduled = new Float64Array(0);
  private sentAt = new Float64Array(0);
  private session = new Int32Array(0);
  private sender = new Int32Array(0);
  private deliveredCount = new Int32Array(0);
  private ackState = new Uint8Array(0);
  private measured = new Uint8Array(0);
  private seen = new Uint8Array(0);
  private readonly bytesPerMessage: number;
  /** Per connection: the last message number received from each sender (per-sender order). */
  private readonly lastFromSender: Map<number, number>[];
  private readonly lastSeq: Float64Array;
  readonly errorCodes = new Map<string, number>();
  readonly counters: Counters = {
    sent: 0,
    acked: 0,
    errors: 0,
    delivered: 0,
    duplicates: 0,
    outOfOrder: 0,
    seqGaps: 0,
    seqRegressions: 0,
    unknown: 0,
    closed: 0,
  };
  count = 0;

  /** Latencies of measured messages, from the scheduled send time. */
  ackLatency: Histogram = newHistogram();
  deliveryLatency: Histogram = newHistogram();
  /** From the moment the frame was actually written (without the generator's own delay). */
  deliveryFromSend: Histogram = newHistogram();
  /** Deliveries of the last second, for the progress line. */
  interval: Histogram = newHistogram();
  /** Arrivals within the measurement window (throughput). */
  windowOpen = false;
  windowAcks = 0;
  windowDeliveries = 0;

  /** Called at each ack and delivery, once its time is taken: the load sends what has fallen due (see runPhase). */
  onActivity: (() => void) | undefined;

  constructor(private readonly plan: Plan) {
    this.bytesPerMessage = Math.ceil(plan.maxMembers / 8);
    this.lastFromSender = Array.from({ length: plan.connections }, () => new Map());
    this.lastSeq = new Float64Array(plan.connections);
  }

  resetHistograms(): void {
    this.ackLatency = newHistogram();
    this.deliveryLatency = newHistogram();
    this.deliveryFromSend = newHistogram();
    this.interval = newHistogram();
    this.windowAcks = 0;
    this.windowDeliveries = 0;
  }

  private grow(min: number): void {
    let capacity = Math.max(1024, this.capacity);
    while (capacity < min) capacity *= 2;
    const resize = <T extends Float64Array | Int32Array | Uint8Array>(old: T, make: (n: number) => T, per = 1): T => {
      const next = make(capacity * per);
      next.set(old);
      return next;
    };
    this.scheduled = resize(this.scheduled, (n) => new Float64Array(n));
    this.sentAt = resize(this.sentAt, (n) => new Float64Array(n));
    this.session = resize(this.session, (n) => new Int32Array(n));
    this.sender = resize(this.sender, (n) => new Int32Array(n));
    this.deliveredCount = resize(this.deliveredCount, (n) => new Int32Array(n));
    this.ackState = resize(this.ackState, (n) => new Uint8Array(n));
    this.measured = resize(this.measured, (n) => new Uint8Array(n));
    this.seen = resize(this.seen, (n) => new Uint8Array(n), this.bytesPerMessage);
    this.capacity = capacity;
  }

  /** Records a send; returns its number. */
  register(session: number, sender: number, scheduledMs: number, measured: boolean): number {
    const g = this.count++;
    if (g >= this.capacity) this.grow(g + 1);
    this.scheduled[g] = scheduledMs;
    this.sentAt[g] = performance.now();
    this.session[g] = session;
    this.sender[g] = sender;
    this.measured[g] = measured ? 1 : 0;
    this.counters.sent++;
    return g;
  }

  private valid(g: number): boolean {
    return Number.isInteger(g) && g >= 0 && g < this.count;
  }

  error(_connection: number, clientMsgId: string | undefined, code: string): void {
    this.errorCodes.set(code, (this.errorCodes.get(code) ?? 0) + 1);
    const g = clientMsgId === undefined ? Number.NaN : indexOfClientMsgId(clientMsgId);
    if (!this.valid(g)) {
      this.counters.unknown++;
      return;
    }
    if (this.ackState[g] !== ACK_NONE) return;
    this.ackState[g] = ACK_ERROR;
    this.counters.errors++;
  }

  closed(_connection: number, _code: number): void {
    this.counters.closed++;
  }

  delivery(connection: number, clientMsgId: string, content: string, seq: number | undefined): void {
    const now = performance.now();
    this.onActivity?.();
    const g = indexOfClientMsgId(clientMsgId);
    if (!this.valid(g)) {
      this.counters.unknown++;
      return;
    }
    // A connection outside the message's session shares its member index with one inside: without
    // this check its delivery would stand in for that member's.
    if (this.plan.sessionOf[connection] !== this.session[g]) {
      this.counters.duplicates++;
      return;
    }
    const local = this.plan.localOf[connection] ?? 0;
    const byte = g * this.bytesPerMessage + (local >> 3);
    const bit = 1 << (local & 7);
    const seen = this.seen[byte] ?? 0;
    if (seen & bit) {
      this.counters.duplicates++;
      return;
    }
    this.seen[byte] = seen | bit;
    this.deliveredCount[g] = (this.deliveredCount[g] ?? 0) + 1;
    this.counters.delivered++;
    if (this.windowOpen) this.windowDeliveries++;

    const sender = this.sender[g] ?? -1;
    const fromSender = this.lastFromSender[connection];
    const last = fromSender?.get(sender);
    if (last !== undefined && g < last) this.counters.outOfOrder++;
    else fromSender?.set(sender, g);

    if (seq !== undefined) {
      const previous = this.lastSeq[connection] ?? 0;
      if (previous > 0 && seq <= previous) this.counters.seqRegressions++;
      else {
        if (previous > 0 && seq !== previous + 1) this.counters.seqGaps++;
        this.lastSeq[connection] = seq;
      }
    }

    const scheduled = scheduledMsOf(content);
    if (this.measured[g] && !Number.isNaN(scheduled)) {
      recordMs(this.deliveryLatency, now - scheduled);
      recordMs(this.interval, now - scheduled);
      recordMs(this.deliveryFromSend, now - (this.sentAt[g] ?? now));
    }
  }

  sessionOf(g: number): number {
    return this.session[g] ?? 0;
  }

  senderOf(g: number): number {
    return this.sender[g] ?? 0;
  }

  /** Messages `from` … `to - 1` not yet acked (or refused), and their deliveries not yet made. */
  outstanding(from: number, to: number): { acks: number; deliveries: number } {
    let acks = 0;
    let deliveries = 0;
    for (let g = from; g < to; g++) {
      if (this.ackState[g] === ACK_NONE) acks++;
      if (this.ackState[g] === ACK_ERROR) continue;
      const expected = this.plan.members[this.session[g] ?? 0]?.length ?? 0;
      // Per message: a surplus on one must not hide a shortfall on another.
      deliveries += Math.max(0, expected - (this.deliveredCount[g] ?? 0));
    }
    return { acks, deliveries };
  }

  /** Deliveries expected for messages `from` … `to - 1` that were accepted (not refused with an error). */
  expectedDeliveries(from: number, to: number): number {
    let expected = 0;
    for (let g = from; g < to; g++) if (this.ackState[g] !== ACK_ERROR) expected += this.plan.members[this.session[g] ?? 0]?.length ?? 0;
    return expected;
  }

  ack(_connection: number, clientMsgId: string): void {
    const now = performance.now();
    this.onActivity?.();
    const g = indexOfClientMsgId(clientMsgId);
    if (!this.valid(g)) {
      this.counters.unknown++;
      return;
    }
    if (this.ackState[g] !== ACK_NONE) {
      if (this.ackState[g] === ACK_OK) this.counters.duplicates++;
      return;
    }
    this.ackState[g] = ACK_OK;
    this.counters.acked++;
    if (this.windowOpen) this.windowAcks++;
    if (this.measured[g]) recordMs(this.ackLatency, now - (this.scheduled[g] ?? now));
  }
}
