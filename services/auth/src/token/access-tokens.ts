import type { Role } from '@switchboard/protocol';
import { SignJWT } from 'jose';
import type { KeyRing } from './key-ring.js';

export interface TokenSubject {
  id: number;
  username: string;
  role: Role;
}

/** The body of `POST /v1/token` and `POST /v1/service-token` (contract §2). */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  user: TokenSubject;
}

export interface TokenIssuerOptions {
  keys: KeyRing;
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

export function createTokenIssuer({ keys, issuer, audience, ttlSeconds }: TokenIssuerOptions) {
  return {
    async issue(user: TokenSubject): Promise<TokenResponse> {
      const { kid, alg, privateKey } = keys.active;
      const issuedAtMs = Date.now();
      const now = Math.floor(issuedAtMs / 1000);
      // `iat_ms`: the issue time to the millisecond, which a revocation of the user's tokens is
      // compared with (`iat` has whole seconds: a token got again just after a revocation, in the
      // same second, would have been taken for one it revoked).
      const accessToken = await new SignJWT({ role: user.role, username: user.username, iat_ms: issuedAtMs })
        .setProtectedHeader({ alg, kid, typ: 'JWT' })
        .setSubject(String(user.id))
        .setIssuer(issuer)
        .setAudience(audience)
        .setIssuedAt(now)
        .setExpirationTime(now + ttlSeconds)
        .sign(privateKey);
      return {
        access_token: accessToken,
        token_type: 'Bearer',
        expires_in: ttlSeconds,
        user: { id: user.id, username: user.username, role: user.role },
      };
    },
  };
}

export type TokenIssuer = ReturnType<typeof createTokenIssuer>;
