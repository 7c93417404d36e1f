import { BusError } from '@switchboard/bus';
import { BusErrorCode, ErrorCode, FrameError, type ReqId } from '@switchboard/protocol';
import { TokenError } from '@switchboard/tokens';

/** The one translator from whatever a handler threw to the error frame the client gets. */
export function toErrorFrame(error: unknown, reqId: ReqId | undefined): { code: ErrorCode; message: string; known: boolean } {
  if (error instanceof FrameError) return { code: error.code, message: error.message, known: true };
  if (error instanceof BusError) {
    switch (error.code) {
      case BusErrorCode.NotFound:
        return { code: ErrorCode.NotFound, message: error.message, known: true };
      case BusErrorCode.Unavailable:
        return { code: ErrorCode.Unavailable, message: 'a backend is unavailable; retry later', known: true };
      case BusErrorCode.RateLimited:
        return { code: ErrorCode.RateLimited, message: error.message, known: true };
      default:
        return { code: ErrorCode.Internal, message: 'internal error', known: false };
    }
  }
  if (error instanceof TokenError) {
    return error.code === 'unavailable'
      ? { code: ErrorCode.Unavailable, message: 'token keys are unavailable; retry later', known: true }
      : { code: ErrorCode.AuthFailed, message: error.message, known: true };
  }
  void reqId;
  return { code: ErrorCode.Internal, message: 'internal error', known: false };
}

/** Throws a FrameError: for handlers refusing a request. */
export function refuse(code: ErrorCode, message: string): never {
  throw new FrameError(code, message);
}
