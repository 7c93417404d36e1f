import type { VerifiedToken } from '@switchboard/tokens';

/** The longest `ACCESS_TOKEN_TTL` auth takes: a token older than this since a revocation has expired anyway. */
export const MAX_TOKEN_LIFETIME_MS = 30 * 86_400_000;
export const DEFAULT_MAX_REVOKED_USERS = 100_000;

/**
 * The users whose tokens auth has revoked (an account disabled, a role or password changed), as
 * this gateway heard it on the bus: a token of such a user below the version named
 * (`VerifiedToken.tokenVersion`) is refused. A revocation is kept while a token it covers may
 * still be valid, and at most `maxUsers` of them, the oldest forgotten first. A gateway that did
 * not hear one (not connected to NATS then, or started since) accepts the revoked tokens until
 * they expire.
 */
export class TokenRevocations {
  /** By user: the version its tokens are valid from, and when that was heard (epoch ms). */
  private readonly revoked = new Map<number, { validFrom: number; heardAt: number }>();

  constructor(
    private readonly maxUsers = DEFAULT_MAX_REVOKED_USERS,
    private readonly now: () => number = Date.now,
  ) {}

  add(userId: number, validFrom: number): void {
    const previous = this.revoked.get(userId);
    this.revoked.delete(userId);
    this.revoked.set(userId, { validFrom: Math.max(validFrom, previous?.validFrom ?? 0), heardAt: this.now() });
    for (const oldest of this.revoked.keys()) {
      if (this.revoked.size <= this.maxUsers) break;
      this.revoked.delete(oldest);
    }
  }

  /** Whether the token is of a version of its user's tokens that a revocation has ended. */
  revokes(token: Pick<VerifiedToken, 'userId' | 'tokenVersion'>): boolean {
    const revocation = this.revoked.get(token.userId);
    if (revocation === undefined) return false;
    if (this.now() - revocation.heardAt > MAX_TOKEN_LIFETIME_MS) {
      this.revoked.delete(token.userId);
      return false;
    }
    return token.tokenVersion < revocation.validFrom;
  }
}
