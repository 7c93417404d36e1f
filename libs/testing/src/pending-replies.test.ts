import { describe, expect, it, vi } from 'vitest';
import { PendingReplies } from './pending-replies.js';

describe('PendingReplies', () => {
  it('resolves a request with its reply, or rejects it with its error, once', async () => {
    const pending = new PendingReplies<number, string>();
    const first = pending.wait(1, 'ping', 1_000);
    const second = pending.wait(2, 'join_session', 1_000);
    expect(pending.settle(1, { reply: 'pong' })).toBe(true);
    expect(pending.settle(2, { error: new Error('forbidden') })).toBe(true);
    await expect(first).resolves.toBe('pong');
    await expect(second).rejects.toThrow('forbidden');
    expect(pending.has(1)).toBe(false);
    expect(pending.settle(1, { reply: 'again' })).toBe(false);
  });

  it('rejects a request without a reply in time, and forgets it', async () => {
    vi.useFakeTimers();
    try {
      const pending = new PendingReplies<string, string>();
      const waiting = expect(pending.wait('r1', 'history', 500)).rejects.toThrow('no answer to history within 500 ms');
      await vi.advanceTimersByTimeAsync(500);
      await waiting;
      expect(pending.has('r1')).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it('rejects every waiting request when the socket closes', async () => {
    const pending = new PendingReplies<number, string>();
    const requests = [pending.wait(1, 'a', 1_000), pending.wait(2, 'b', 1_000)];
    pending.rejectAll(new Error('socket closed'));
    for (const request of requests) await expect(request).rejects.toThrow('socket closed');
    expect(pending.has(1) || pending.has(2)).toBe(false);
  });
});
