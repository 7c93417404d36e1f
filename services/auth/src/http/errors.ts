/**
 * Every error the auth API answers with, as `{ error: { code, message } }`. Codes are part of the
 * API: never reuse or rename one.
 */
export const HttpErrorCode = {
  InvalidBody: { status: 400, code: 'invalid_body' },
  Unauthorized: { status: 401, code: 'unauthorized' },
  InvalidCredentials: { status: 401, code: 'invalid_credentials' },
  Forbidden: { status: 403, code: 'forbidden' },
  NotFound: { status: 404, code: 'not_found' },
  UsernameTaken: { status: 409, code: 'username_taken' },
  PayloadTooLarge: { status: 413, code: 'payload_too_large' },
  UnsupportedMediaType: { status: 415, code: 'unsupported_media_type' },
  TooManyRequests: { status: 429, code: 'too_many_requests' },
  Internal: { status: 500, code: 'internal' },
  Unavailable: { status: 503, code: 'unavailable' },
} as const;
export type HttpErrorCode = (typeof HttpErrorCode)[keyof typeof HttpErrorCode];

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly kind: HttpErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface ErrorBody {
  error: { code: string; message: string };
}

export const errorBody = (code: string, message: string): ErrorBody => ({ error: { code, message } });
