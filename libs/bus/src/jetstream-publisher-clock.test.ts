import type { NatsConnection } from 'nats';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createJetStreamPublisher, type PublishError } from './jetstream-publisher.js';

/** A connection that takes every publish and never answers one: only the deadline settles it. */
const silentConnection = {
  subscribe: () => ({ unsubscribe: () => undefined }),
  publish: () => undefined,
  isClosed: () => false,
} as unknown as NatsConnection;

const HOUR_MS = 3_600_000;

/** Publishes with a 1 s timeout and reports how the publish has settled so far. */
function publishOnce(): () => string {
  const publisher = createJetStreamPublisher(silentConnection);
  let outcome = 'pending';
  publisher.publish('subject', new Uint8Array([1]), 'id-1', 1_000).then(
    () => {
      outcome = 'acked';
    },
    (error: PublishError) => {
      outcome = error.reason;
    },
  );
  return () => outcome;
}

describe('createJetStreamPublisher when the wall clock is stepped', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setTimeout', 'clearTimeout', 'Date', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('still times a publish out after its timeout when the clock is set back an hour', async () => {
    const outcome = publishOnce();
    vi.setSystemTime(Date.now() - HOUR_MS);
    await vi.advanceTimersByTimeAsync(1_200);
    expect(outcome()).toBe('timed out');
  });

  it('does not time a publish out early when the clock is set forward an hour', async () => {
    const outcome = publishOnce();
    vi.setSystemTime(Date.now() + HOUR_MS);
    await vi.advanceTimersByTimeAsync(500);
    expect(outcome()).toBe('pending');
    await vi.advanceTimersByTimeAsync(700);
    expect(outcome()).toBe('timed out');
  });
});
