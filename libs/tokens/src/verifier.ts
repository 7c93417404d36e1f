import { isRole, type Role } from '@switchboard/protocol';
import { createLocalJWKSet, decodeProtectedHeader, errors, type JSONWebKeySet, type JWTPayload, jwtVerify } from 'jose';
import { TokenError, TokenErrorCode } from './errors.js';
import type { KeySource } from './key-source.js';

/** The only algorithms accepted: asymmetric, so a public key can never be used as an HMAC secret. */
export const ACCEPTED_ALGORITHMS = ['EdDSA', 'ES256'] as const;
/** An unknown `kid` refetches the keys at most this often, so forged tokens cannot hammer the auth service. */
export const DEFAULT_MIN_REFETCH_INTERVAL_MS = 10_000;
export const DEFAULT_CLOCK_TOLERANCE_S = 5;
/**
 * With no keys yet, a failed fetch is tried again at most this often: tokens that come meanwhile
 * are refused `unavailable` at once. Before, each token that came after a failed fetch asked
 * again (only tokens arriving together shared one), so after a restart with the auth service
 * down a stream of reconnecting clients made a request each.
 */
export const DEFAULT_RETRY_WITHOUT_KEYS_MS = 1_000;
/**
 * Cached keys are fetched again once this old (the old set kept while the fetch fails), so a key
 * the auth service stops publishing, one that leaked, stops verifying within this time.
 */
export const DEFAULT_MAX_KEY_AGE_MS = 10 * 60_000;

export interface VerifiedToken {
  userId: number;
  role: Role;
  username: string;
  /** Expiry as epoch milliseconds. */
  expiresAt: number;
  /**
   * The account's token version when the token was issued (its `tv` claim; 0 for a token from
   * before it): a revocation of the user's tokens names the version from which they are valid.
   */
  tokenVersion: number;
}

export interface TokenVerifierOptions {
  keySource: KeySource;
  issuer: string;
  audience: string;
  minRefetchIntervalMs?: number;
  maxKeyAgeMs?: number;
  retryWithoutKeysMs?: number;
  clockToleranceS?: number;
  /** The wall clock (epoch ms) that tokens' times are checked against; injected by tests. */
  now?: () => number;
  /**
   * The clock (ms) that the refetch interval and the keys' age are measured on: `performance.now`,
   * which the wall clock being stepped (NTP correcting a VM that ran ahead) does not move.
   */
  elapsed?: () => number;
}

export interface TokenVerifier {
  verify(token: string): Promise<VerifiedToken>;
}

type KeyResolver = ReturnType<typeof createLocalJWKSet>;

/**
 * Verifies access tokens locally against keys fetched from the auth service and cached. The `jku`,
 * `x5u` and `jwk` headers are ignored: keys only ever come from the configured source.
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const {
    keySource,
    issuer,
    audience,
    minRefetchIntervalMs = DEFAULT_MIN_REFETCH_INTERVAL_MS,
    maxKeyAgeMs = DEFAULT_MAX_KEY_AGE_MS,
    retryWithoutKeysMs = DEFAULT_RETRY_WITHOUT_KEYS_MS,
    clockToleranceS = DEFAULT_CLOCK_TOLERANCE_S,
    now = Date.now,
    elapsed = () => performance.now(),
  } = options;

  let resolver: KeyResolver | undefined;
  let lastFetchAt = Number.NEGATIVE_INFINITY;
  let lastFailureAt = Number.NEGATIVE_INFINITY;
  let inFlight: Promise<KeyResolver> | undefined;
  /** When the fetch that gave each set of keys started: a set asked for before a token came may predate its key. */
  const fetchedAt = new WeakMap<KeyResolver, number>();

  const refresh = (): Promise<KeyResolver> => {
    inFlight ??= (async () => {
      try {
        const startedAt = elapsed();
        lastFetchAt = startedAt;
        // Called from a microtask, so a source that throws synchronously still settles after `inFlight` is set
        // (otherwise `finally` would run first and `inFlight` would stay a rejected promise forever).
        const jwks: JSONWebKeySet = await Promise.resolve().then(() => keySource.fetchKeys());
        resolver = createLocalJWKSet(jwks);
        fetchedAt.set(resolver, startedAt);
        return resolver;
      } catch (error) {
        lastFailureAt = elapsed();
        throw new TokenError(TokenErrorCode.Unavailable, 'signing keys are unavailable', { cause: error });
      } finally {
        inFlight = undefined;
      }
    })();
    return inFlight;
  };

  /** Whether `keys` were asked for after `since`: then a kid missing from them is not a key too new to be known. */
  const askedSince = (keys: KeyResolver, since: number) => (fetchedAt.get(keys) ?? Number.NEGATIVE_INFINITY) >= since;

  /**
   * The cached keys, fetched again first when they are older than `maxKeyAgeMs`; kept if that fetch
   * fails, and fetched again `minRefetchIntervalMs` after a failed attempt. Before, a failed
   * attempt counted as a fetch: the old keys were kept another `maxKeyAgeMs` without asking, so a
   * withdrawn key verified for twice as long after one lost request. `fresh` when they were asked
   * for since `since`: joining a fetch that was already under way (the periodic one) when the
   * token came is not.
   */
  const currentKeys = async (since: number): Promise<{ keys: KeyResolver; fresh: boolean }> => {
    const now = elapsed();
    const keysAskedAt = resolver ? (fetchedAt.get(resolver) ?? Number.NEGATIVE_INFINITY) : Number.NEGATIVE_INFINITY;
    if (resolver && (now - keysAskedAt < maxKeyAgeMs || now - lastFetchAt < minRefetchIntervalMs)) return { keys: resolver, fresh: false };
    if (!resolver && !inFlight && now - lastFailureAt < retryWithoutKeysMs)
      throw new TokenError(TokenErrorCode.Unavailable, 'signing keys are unavailable; retry shortly');
    const stale = resolver;
    try {
      const keys = await refresh();
      return { keys, fresh: askedSince(keys, since) };
    } catch (error) {
      if (stale) return { keys: stale, fresh: false };
      throw error;
    }
  };

  const verifyWith = (token: string, keys: KeyResolver) =>
    jwtVerify(token, keys, {
      algorithms: [...ACCEPTED_ALGORITHMS],
      issuer,
      audience,
      clockTolerance: clockToleranceS,
      requiredClaims: ['sub', 'exp', 'iat'],
      currentDate: new Date(now()),
    });

  return {
    async verify(token) {
      // What no key could make valid (not a JWS, a header that does not decode, another
      // algorithm) is refused before any key is asked for: on a gateway whose keys could not be
      // fetched yet it was answered `unavailable`, which a client retries, rather than `auth_failed`.
      let algorithm: unknown;
      try {
        algorithm = token.split('.').length === 3 ? decodeProtectedHeader(token).alg : undefined;
      } catch (error) {
        throw new TokenError(TokenErrorCode.Invalid, 'invalid token', { cause: error });
      }
      if (!(ACCEPTED_ALGORITHMS as readonly unknown[]).includes(algorithm)) throw new TokenError(TokenErrorCode.Invalid, 'invalid token');
      const begun = elapsed();
      /** The key may be new (the auth service just rotated) and not among keys asked for before: a refusal the client retries. */
      const notKnownYet = (cause: unknown) =>
        new TokenError(TokenErrorCode.Unavailable, 'token signed by a key not known yet; retry shortly', { cause });
      let payload: JWTPayload;
      try {
        let { keys, fresh } = await currentKeys(begun);
        try {
          payload = (await verifyWith(token, keys)).payload;
        } catch (error) {
          if (!(error instanceof errors.JWKSNoMatchingKey) || fresh) throw error;
          // Join a refetch already under way, or use keys fetched since this attempt began, before rate limiting.
          if (inFlight) keys = await inFlight;
          else if (resolver && resolver !== keys) keys = resolver;
          else if (elapsed() - lastFetchAt < minRefetchIntervalMs) throw notKnownYet(error);
          else keys = await refresh();
          try {
            payload = (await verifyWith(token, keys)).payload;
          } catch (again) {
            if (!(again instanceof errors.JWKSNoMatchingKey) || askedSince(keys, begun)) throw again;
            // Those keys were asked for before the token came (a fetch joined under way): ask
            // once more if allowed, else hold the token back.
            if (elapsed() - lastFetchAt < minRefetchIntervalMs) throw notKnownYet(again);
            payload = (await verifyWith(token, await refresh())).payload;
          }
        }
      } catch (error) {
        throw toTokenError(error);
      }
      return toVerifiedToken(payload);
    },
  };
}

function toTokenError(error: unknown): TokenError {
  if (error instanceof TokenError) return error;
  if (error instanceof errors.JWTExpired) return new TokenError(TokenErrorCode.Expired, 'token expired', { cause: error });
  if (error instanceof errors.JWTClaimValidationFailed && error.claim === 'nbf') {
    return new TokenError(TokenErrorCode.NotYetValid, 'token not yet valid', { cause: error });
  }
  if (error instanceof errors.JWKSNoMatchingKey) {
    return new TokenError(TokenErrorCode.UnknownKey, 'token signed by an unknown key', { cause: error });
  }
  return new TokenError(TokenErrorCode.Invalid, 'invalid token', { cause: error });
}

function toVerifiedToken(payload: JWTPayload): VerifiedToken {
  const userId = Number(payload.sub);
  const { role, username } = payload as { role?: unknown; username?: unknown };
  if (!Number.isSafeInteger(userId) || userId <= 0 || String(userId) !== payload.sub) {
    throw new TokenError(TokenErrorCode.Invalid, 'token subject is not a user id');
  }
  if (!isRole(role)) throw new TokenError(TokenErrorCode.Invalid, 'token role is missing or unknown');
  if (typeof username !== 'string') throw new TokenError(TokenErrorCode.Invalid, 'token username is missing');
  const { tv } = payload as { tv?: unknown };
  const tokenVersion = typeof tv === 'number' && Number.isSafeInteger(tv) && tv >= 0 ? tv : 0;
  return { userId, role, username, expiresAt: (payload.exp ?? 0) * 1000, tokenVersion };
}
