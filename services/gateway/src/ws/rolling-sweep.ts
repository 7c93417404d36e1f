/**
 * Visits every item once per period, a slice of them on each tick: the gateway's WebSocket pings
 * and slow-reader checks. Pinging every socket in one go, as it did, blocked a gateway holding
 * 6,000 sockets for 150–220 ms every heartbeat interval (a write system call per socket, then all
 * their pongs at once), and every message in flight waited for it; in the bench's `target`
 * scenario that one stall made most of the delivery p99. Items are dealt to the slices in turn as
 * they are added, so the slices stay even however the sockets arrive (all at once after a gateway
 * restart, say), and each is visited at the same point of every period.
 */
export class RollingSweep<T> {
  private readonly slices: Set<T>[];
  private readonly sliceOf = new Map<T, Set<T>>();
  /** The slice the next added item joins. */
  private dealTo = 0;
  /** The slice the next tick visits. */
  private visitNext = 0;
  private readonly timer: NodeJS.Timeout;

  /** Ticks every `tickMs` or so (the period divided evenly); a period shorter than that is one slice. */
  constructor(
    periodMs: number,
    private readonly visit: (item: T, now: number) => void,
    tickMs = 500,
  ) {
    const count = Math.max(1, Math.round(periodMs / tickMs));
    this.slices = Array.from({ length: count }, () => new Set<T>());
    this.timer = setInterval(() => this.tick(), periodMs / count);
    this.timer.unref();
  }

  get size(): number {
    return this.sliceOf.size;
  }

  add(item: T): void {
    if (this.sliceOf.has(item)) return;
    const slice = this.slices[this.dealTo] as Set<T>;
    this.dealTo = (this.dealTo + 1) % this.slices.length;
    slice.add(item);
    this.sliceOf.set(item, slice);
  }

  delete(item: T): void {
    this.sliceOf.get(item)?.delete(item);
    this.sliceOf.delete(item);
  }

  /** Visits the next slice. Called by the timer; public for tests. */
  tick(now = performance.now()): void {
    const slice = this.slices[this.visitNext] as Set<T>;
    this.visitNext = (this.visitNext + 1) % this.slices.length;
    for (const item of slice) this.visit(item, now);
  }

  close(): void {
    clearInterval(this.timer);
  }
}
