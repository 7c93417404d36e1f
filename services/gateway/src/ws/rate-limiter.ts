const monotonicNow = () => performance.now();

/**
 * A token bucket: `ratePerSec` tokens a second, holding at most `burst`. Refilled lazily on
 * each take, so an idle connection costs nothing.
 */
export class TokenBucket {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly now: () => number = monotonicNow,
  ) {
    this.tokens = burst;
    this.refilledAt = now();
  }

  tryTake(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Whole milliseconds until `tryTake` can succeed (0 if it can now). */
  msUntilToken(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.ratePerSec) * 1000);
  }

  /** Adds the tokens earned since the last refill, up to `burst`. */
  private refill(): void {
    const at = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((at - this.refilledAt) / 1000) * this.ratePerSec);
    this.refilledAt = at;
  }
}
