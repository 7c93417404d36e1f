import type { ClientFrame, ReqId } from '@switchboard/protocol';

export type Timer = ReturnType<typeof setTimeout>;

/** What the request and send queues need from the connection. */
export interface Transport {
  /** Writes a frame if the connection is ready; false if it is not, and the caller waits for the next flush. */
  transmit(frame: ClientFrame): boolean;
  nextReqId(): ReqId;
  /**
   * The delay before retry number `attempt` (from 0) of a frame refused with a transient error:
   * the backoff, and never less than `notBeforeMs` (the error's `retry_after_ms`).
   */
  retryDelay(attempt: number, notBeforeMs?: number): number;
}
