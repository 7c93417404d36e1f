import { describe, expect, it } from 'vitest';
import { MAX_TOKEN_LIFETIME_MS, TokenRevocations } from './token-revocations.js';

describe('TokenRevocations', () => {
  it("refuses a user's tokens below the newest version named, and no one else's", () => {
    const revocations = new TokenRevocations();
    revocations.add(7, 2);
    expect(revocations.revokes({ userId: 7, tokenVersion: 0 })).toBe(true);
    expect(revocations.revokes({ userId: 7, tokenVersion: 1 })).toBe(true);
    expect(revocations.revokes({ userId: 7, tokenVersion: 2 })).toBe(false);
    expect(revocations.revokes({ userId: 8, tokenVersion: 0 })).toBe(false);
    // An older revocation heard late does not bring the line back.
    revocations.add(7, 4);
    revocations.add(7, 3);
    expect(revocations.revokes({ userId: 7, tokenVersion: 3 })).toBe(true);
  });

  it('forgets a revocation once every token it covered has expired, and the oldest beyond its bound', () => {
    let now = 0;
    const revocations = new TokenRevocations(2, () => now);
    revocations.add(1, 1);
    revocations.add(2, 1);
    revocations.add(3, 1);
    expect(revocations.revokes({ userId: 1, tokenVersion: 0 })).toBe(false);
    expect(revocations.revokes({ userId: 2, tokenVersion: 0 })).toBe(true);
    now = MAX_TOKEN_LIFETIME_MS + 1;
    expect(revocations.revokes({ userId: 3, tokenVersion: 0 })).toBe(false);
  });
});
