/** Why a token was refused. `unavailable` means the keys could not be fetched: retry later. */
export const TokenErrorCode = {
  Invalid: 'invalid',
  Expired: 'expired',
  NotYetValid: 'not_yet_valid',
  UnknownKey: 'unknown_key',
  Unavailable: 'unavailable',
} as const;
export type TokenErrorCode = (typeof TokenErrorCode)[keyof typeof TokenErrorCode];

export class TokenError extends Error {
  override name = 'TokenError';
  constructor(
    readonly code: TokenErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
