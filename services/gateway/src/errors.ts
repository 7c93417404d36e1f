import { BusError } from '@switchboard/bus';
import { BusErrorCode, ErrorCode, FrameError } from '@switchboard/protocol';
import { TokenError } from '@switchboard/tokens';

export interface ErrorAnswer {
  code: ErrorCode;
  message: string;
  /** False for what no handler meant to throw: logged as an error, answered `internal`. */
  known: boolean;
  /** With `rate_limited`: how long until the same request can succeed, when that is known. */
  retryAfterMs?: number;
}

/** The one translator from whatever a handler threw to the error frame the client gets. */
export function toErrorFrame(error: unknown): ErrorAnswer {
  if (error instanceof FrameError) return { code: error.code, message: error.message, known: true };
  if (error instanceof BusError) {
    switch (error.code) {
      case BusErrorCode.NotFound:
        return { code: ErrorCode.NotFound, message: error.message, known: true };
      case BusErrorCode.Unavailable:
        return { code: ErrorCode.Unavailable, message: 'a backend is unavailable; retry later', known: true };
      case BusErrorCode.RateLimited:
        return { code: ErrorCode.RateLimited, message: error.message, known: true, retryAfterMs: error.retryAfterMs };
      default:
        return { code: ErrorCode.Internal, message: 'internal error', known: false };
    }
  }
  if (error instanceof TokenError) {
    return error.code === 'unavailable'
      ? { code: ErrorCode.Unavailable, message: 'token keys are unavailable; retry later', known: true }
      : { code: ErrorCode.AuthFailed, message: error.message, known: true };
  }
  return { code: ErrorCode.Internal, message: 'internal error', known: false };
}

/** Throws a FrameError: for handlers refusing a request. */
export function refuse(code: ErrorCode, message: string): never {
  throw new FrameError(code, message);
}
