/**
 * Requests waiting for their replies by `req_id`, each with a deadline: the request/reply half of
 * a test or bench WebSocket client.
 */
export class PendingReplies<Id, Reply> {
  private readonly waiting = new Map<Id, { resolve: (reply: Reply) => void; reject: (error: Error) => void }>();

  /** Resolves with the reply settled for `id`; rejects if none comes within `timeoutMs` (`what` names the request). */
  wait(id: Id, what: string, timeoutMs: number): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no answer to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
    });
  }

  has(id: Id): boolean {
    return this.waiting.has(id);
  }

  /** Hands the waiter of `id` its reply, or (with an error) its failure; false if nothing waits for `id`. */
  settle(id: Id, outcome: { reply: Reply } | { error: Error }): boolean {
    const waiter = this.waiting.get(id);
    if (!waiter) return false;
    this.waiting.delete(id);
    if ('error' in outcome) waiter.reject(outcome.error);
    else waiter.resolve(outcome.reply);
    return true;
  }

  /** Fails every request still waiting (the socket closed). */
  rejectAll(error: Error): void {
    for (const waiter of this.waiting.values()) waiter.reject(error);
    this.waiting.clear();
  }
}
