import { describe, expect, it } from 'vitest';
import { TokenBucket } from './rate-limiter.js';

function bucketWithClock(ratePerSec: number, burst: number) {
  let time = 1_000_000;
  const clock = {
    now: () => time,
    advance(ms: number) {
      time += ms;
    },
  };
  return { bucket: new TokenBucket(ratePerSec, burst, clock.now), clock };
}

/** Takes until refused (at most `limit` times) and returns how many takes succeeded. */
function drain(bucket: TokenBucket, limit = 1_000): number {
  let taken = 0;
  while (taken < limit && bucket.tryTake()) taken += 1;
  return taken;
}

describe('TokenBucket', () => {
  it('starts full, allowing exactly burst takes without time passing', () => {
    const { bucket } = bucketWithClock(1, 5);

    expect(drain(bucket)).toBe(5);
  });

  it('refuses once it is empty', () => {
    const { bucket } = bucketWithClock(1, 2);

    expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(false);
    expect(bucket.tryTake()).toBe(false);
  });

  it('keeps refusing while the clock does not move', () => {
    const { bucket } = bucketWithClock(100, 1);

    drain(bucket);

    for (let i = 0; i < 10; i += 1) expect(bucket.tryTake()).toBe(false);
  });

  it('refills at ratePerSec', () => {
    const { bucket, clock } = bucketWithClock(2, 10);
    drain(bucket);

    clock.advance(1_000);

    expect(drain(bucket)).toBe(2);
  });

  it('refills one token per interval, repeatedly', () => {
    const { bucket, clock } = bucketWithClock(1, 3);
    drain(bucket);

    for (let i = 0; i < 5; i += 1) {
      clock.advance(1_000);
      expect(bucket.tryTake()).toBe(true);
      expect(bucket.tryTake()).toBe(false);
    }
  });

  it('never holds more than burst tokens after a long idle', () => {
    const { bucket, clock } = bucketWithClock(10, 4);
    drain(bucket);

    clock.advance(60 * 60 * 1_000);

    expect(drain(bucket)).toBe(4);
  });

  it('does not grow past burst when it is never drained', () => {
    const { bucket, clock } = bucketWithClock(5, 3);

    clock.advance(10_000);
    expect(bucket.tryTake()).toBe(true);
    clock.advance(10_000);

    expect(drain(bucket)).toBe(3);
  });

  it('refills one token after 100 ms at 10 per second', () => {
    const { bucket, clock } = bucketWithClock(10, 1);
    drain(bucket);

    clock.advance(100);

    expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(false);
  });

  it('does not refill a whole token after only 50 ms at 10 per second', () => {
    const { bucket, clock } = bucketWithClock(10, 1);
    drain(bucket);

    clock.advance(50);

    expect(bucket.tryTake()).toBe(false);
  });

  it('keeps the fractional refill across a refused take', () => {
    const { bucket, clock } = bucketWithClock(10, 1);
    drain(bucket);

    clock.advance(50);
    expect(bucket.tryTake()).toBe(false);
    clock.advance(50);

    expect(bucket.tryTake()).toBe(true);
  });

  it('keeps the fractional remainder after a successful take', () => {
    const { bucket, clock } = bucketWithClock(10, 5);
    drain(bucket);

    clock.advance(150);
    expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(false);
    clock.advance(50);

    expect(bucket.tryTake()).toBe(true);
  });

  it('supports rates below one token per second', () => {
    const { bucket, clock } = bucketWithClock(0.5, 1);
    drain(bucket);

    clock.advance(1_999);
    expect(bucket.tryTake()).toBe(false);
    clock.advance(1);

    expect(bucket.tryTake()).toBe(true);
  });

  it('tells how long until the next token, and a take after that wait succeeds', () => {
    const { bucket, clock } = bucketWithClock(10, 2);
    expect(bucket.msUntilToken()).toBe(0);
    drain(bucket);

    expect(bucket.msUntilToken()).toBe(100);
    clock.advance(30);
    const wait = bucket.msUntilToken();
    expect(wait).toBe(70);
    clock.advance(wait - 1);
    expect(bucket.tryTake()).toBe(false);
    clock.advance(1);
    expect(bucket.tryTake()).toBe(true);
  });

  it('uses a real clock by default', () => {
    const bucket = new TokenBucket(0.001, 2);

    expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(false);
  });
});
