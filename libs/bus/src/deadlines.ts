/**
 * Deadlines for many items on one timer, to a resolution of `resolutionMs`: the gateway's token
 * expiries (one per connection) and the JetStream publisher's PubAck deadlines (one per publish),
 * without a `Timeout` per item (each one an object, a closure and, for every distinct delay, a
 * timer list of its own). A deadline never fires before its time, and at most about one
 * resolution after it. The timer starts when a deadline is set and stops at the first tick that
 * finds none left, so that items set and deleted one after another (a publish answered before the
 * next) do not start and stop it each time.
 *
 * `now` is the clock the deadlines are given on: the wall clock (`Date.now`, the default) for
 * epoch times such as a token's `exp`, which move with it; `performance.now` for timeouts, which
 * must not move when the system time is stepped (the JetStream publisher's).
 */
export class Deadlines<T> {
  private readonly slots = new Map<T, number>();
  private readonly buckets = new Map<number, Set<T>>();
  /** The last slot whose deadlines have fired. */
  private firedThrough: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly onDue: (item: T) => void,
    private readonly resolutionMs = 250,
    private readonly now: () => number = Date.now,
  ) {
    this.firedThrough = this.slotAt(this.now()) - 1;
  }

  get size(): number {
    return this.slots.size;
  }

  /** Sets (or moves) the item's deadline to `atMs` on the `now` clock. */
  set(item: T, atMs: number): void {
    this.delete(item);
    if (this.timer === undefined) this.start();
    this.followClockBack();
    // A deadline already past goes in the next slot to fire.
    const slot = Math.max(this.slotAt(atMs), this.firedThrough + 1);
    this.slots.set(item, slot);
    const bucket = this.buckets.get(slot);
    if (bucket) bucket.add(item);
    else this.buckets.set(slot, new Set([item]));
  }

  delete(item: T): void {
    const slot = this.slots.get(item);
    if (slot === undefined) return;
    this.slots.delete(item);
    const bucket = this.buckets.get(slot);
    bucket?.delete(item);
    if (bucket?.size === 0) this.buckets.delete(slot);
  }

  /** Fires every deadline up to now. Called by the timer; public for tests with their own clock. */
  tick(): void {
    this.followClockBack();
    const through = this.slotAt(this.now()) - 1;
    // One slot a tick, as a rule. After a jump of the clock (a wall clock stepped forward by a
    // year once NTP corrects it), going through every slot passed would block the event loop for
    // minutes: then only the slots that hold deadlines are gone through, in order.
    const due =
      through - this.firedThrough <= this.buckets.size
        ? Array.from({ length: Math.max(0, through - this.firedThrough) }, (_, index) => this.firedThrough + 1 + index)
        : [...this.buckets.keys()].filter((slot) => slot <= through).sort((a, b) => a - b);
    // Before firing: a deadline set while they fire goes in a slot after these.
    this.firedThrough = Math.max(this.firedThrough, through);
    // A callback that throws does not keep the rest from firing: the first error is thrown once
    // every due deadline has fired (from the timer, an uncaught exception, as a throwing
    // `setTimeout` callback would be).
    let failure: { error: unknown } | undefined;
    for (const slot of due) {
      const bucket = this.buckets.get(slot);
      if (!bucket) continue;
      // Left in reach while it fires: a callback that deletes or moves another of its items takes
      // that item out of it, and a Set's iteration skips what is deleted before it is reached.
      for (const item of bucket) {
        this.slots.delete(item);
        try {
          this.onDue(item);
        } catch (error) {
          failure ??= { error };
        }
      }
      this.buckets.delete(slot);
    }
    if (this.slots.size === 0) this.stop();
    if (failure) throw failure.error;
  }

  close(): void {
    this.slots.clear();
    this.buckets.clear();
    this.stop();
  }

  /**
   * A wall clock stepped back (NTP correcting one that ran ahead) leaves the slots fired ahead of
   * it: fired again from where the clock is now, the deadlines set since fire at their time.
   * Before, each one waited until the clock had caught up with the old mark, a token's expiry
   * then coming as late as the clock had run ahead. Fired slots hold nothing, so nothing fires twice.
   */
  private followClockBack(): void {
    this.firedThrough = Math.min(this.firedThrough, this.slotAt(this.now()) - 1);
  }

  /** Slot n holds deadlines in ((n - 1) × resolution, n × resolution], so it fires once n × resolution has passed. */
  private slotAt(ms: number): number {
    return Math.ceil(ms / this.resolutionMs);
  }

  private start(): void {
    // Slots passed while nothing was set have nothing to fire.
    this.firedThrough = Math.max(this.firedThrough, this.slotAt(this.now()) - 1);
    this.timer = setInterval(() => this.tick(), this.resolutionMs);
    this.timer.unref();
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
