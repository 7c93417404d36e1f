/**
 * The authenticated sockets of each user on this gateway, at most `max` each (0: no bound). A user
 * holding many sockets holds their memory, and after authenticating each may make the gateway
 * read a frame of up to 16 × MAX_FRAME_BYTES whole; the bound is what one account can take of a
 * pod, whatever it sends.
 */
export class UserConnections {
  private readonly counts = new Map<number, number>();

  constructor(readonly max: number) {}

  /** Counts one more socket of the user; false, counting nothing, when it holds `max` already. */
  tryAdd(userId: number): boolean {
    const count = this.counts.get(userId) ?? 0;
    if (this.max > 0 && count >= this.max) return false;
    this.counts.set(userId, count + 1);
    return true;
  }

  remove(userId: number): void {
    const count = this.counts.get(userId) ?? 0;
    if (count <= 1) this.counts.delete(userId);
    else this.counts.set(userId, count - 1);
  }

  count(userId: number): number {
    return this.counts.get(userId) ?? 0;
  }
}
