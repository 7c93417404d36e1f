import type { Role } from '@switchboard/protocol';
import { SignJWT } from 'jose';
import type { KeyRing } from './key-ring.js';

export interface TokenSubject {
  id: number;
  username: string;
  role: Role;
}

/** Whom a token is issued to: the account as read, with the version its tokens are at. */
export interface TokenHolder extends TokenSubject {
  token_version: number;
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
    async issue(user: TokenHolder): Promise<TokenResponse> {
      const { kid, alg, privateKey } = keys.active;
      const now = Math.floor(Date.now() / 1000);
      // `tv`: the account's token version as read before the password was checked. A change that
      // revokes its tokens raises the version, so a token from a login under way meanwhile, made
      // from the row as it was, is revoked too (a time would have let it through, and depended
      // on the clocks of two auth replicas agreeing).
      const accessToken = await new SignJWT({ role: user.role, username: user.username, tv: user.token_version })
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
