/**
 * The client's side of the gateway's frame rate: a token bucket of `ratePerSec` tokens a second,
 * holding at most `burst`, refilled lazily. The gateway refuses every frame over its own bucket
 * (`RATE_LIMIT_PER_SEC`, with twice that as burst) and closes a socket after 200 refusals within
 * 10 s, so a client that writes only what this bucket allows is never refused for its rate.
 */
export class FrameBucket {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.tokens = burst;
    this.refilledAt = now();
  }

  /** A new connection: the gateway starts its bucket full, so this one does too. */
  reset(): void {
    this.tokens = this.burst;
    this.refilledAt = this.now();
  }

  /** Takes a token if one is there. */
  tryTake(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /**
   * Takes a token whether or not one is there, for a frame that cannot wait (`auth`, the liveness
   * probe): the gateway counts it all the same, so the frames after it wait for the debt.
   */
  take(): void {
    this.refill();
    this.tokens -= 1;
  }

  /** How long until a token is there (0 if one is). */
  waitMs(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.ratePerSec) * 1000);
  }

  private refill(): void {
    const at = this.now();
    // A wall clock set back must not take tokens away.
    const elapsed = Math.max(0, at - this.refilledAt);
    this.tokens = Math.min(this.burst, this.tokens + (elapsed / 1000) * this.ratePerSec);
    this.refilledAt = at;
  }
}
