import type { ErrorCode } from '@switchboard/protocol';

/**
 * `code` is the protocol's error code (`forbidden`, `not_found`, `rate_limited`, ...) or one of the
 * client's own: `closed` (the client was closed, the connection dropped under a request that is
 * not safe to repeat, a join was cancelled by a `leave()` of its session, or no URL could be opened) and `timeout` (no answer within `requestTimeoutMs`).
 */
export type ChatErrorCode = ErrorCode | 'closed' | 'timeout';

export class ChatError extends Error {
  override name = 'ChatError';
  constructor(
    readonly code: ChatErrorCode,
    message: string,
    /** With `rate_limited`, when the gateway knows: how long until the same request can succeed. */
    readonly retryAfterMs?: number,
    /** The `client_msg_id` of the send it rejects, so that the app can send the message again with it. */
    readonly clientMsgId?: string,
  ) {
    super(message);
  }
}

/** The longest delay a timer takes (2³¹ − 1 ms); a longer one fires at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/** An error frame's `retry_after_ms`, if it is a usable number of milliseconds. */
export function retryAfterOf(frame: { retry_after_ms?: unknown }): number | undefined {
  const value = frame.retry_after_ms;
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/** A delay for `setTimeout`: at most the longest one it takes. */
export const timerDelay = (ms: number): number => Math.min(ms, MAX_TIMER_MS);

/** Errors after which the same frame may succeed later: resent with backoff. */
export const isTransient = (code: string): boolean => code === 'unavailable' || code === 'rate_limited';
