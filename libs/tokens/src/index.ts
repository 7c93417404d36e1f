export { TokenError, TokenErrorCode } from './errors.js';
export { DEFAULT_KEY_REQUEST_TIMEOUT_MS, type KeySource, type RequestFn, requestKeySource } from './key-source.js';
export {
  ACCEPTED_ALGORITHMS,
  createTokenVerifier,
  DEFAULT_CLOCK_TOLERANCE_S,
  DEFAULT_MAX_KEY_AGE_MS,
  DEFAULT_MIN_REFETCH_INTERVAL_MS,
  DEFAULT_RETRY_WITHOUT_KEYS_MS,
  type TokenVerifier,
  type TokenVerifierOptions,
  type VerifiedToken,
} from './verifier.js';
