import { describe, expect, it } from 'vitest';
import { MAX_TOKEN_LIFETIME_MS, TokenRevocations } from './token-revocations.js';

describe('TokenRevocations', () => {
  it("refuses a user's tokens issued at or before the newest revocation, and no one else's", () => {
    const revocations = new TokenRevocations();
    revocations.add(7, 1_000);
    expect(revocations.revokes({ userId: 7, issuedAt: 999 })).toBe(true);
    expect(revocations.revokes({ userId: 7, issuedAt: 1_000 })).toBe(true);
    expect(revocations.revokes({ userId: 7, issuedAt: 1_001 })).toBe(false);
    expect(revocations.revokes({ userId: 8, issuedAt: 1 })).toBe(false);
    // An older revocation heard late does not bring the line back.
    revocations.add(7, 2_000);
    revocations.add(7, 1_500);
    expect(revocations.revokes({ userId: 7, issuedAt: 1_800 })).toBe(true);
  });

  it('forgets a revocation once every token it covered has expired, and the oldest beyond its bound', () => {
    let now = 0;
    const revocations = new TokenRevocations(2, () => now);
    revocations.add(1, 100);
    revocations.add(2, 100);
    revocations.add(3, 100);
    expect(revocations.revokes({ userId: 1, issuedAt: 50 })).toBe(false);
    expect(revocations.revokes({ userId: 2, issuedAt: 50 })).toBe(true);
    now = MAX_TOKEN_LIFETIME_MS + 1;
    expect(revocations.revokes({ userId: 3, issuedAt: 50 })).toBe(false);
  });
});
