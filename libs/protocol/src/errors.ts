/**
 * Error codes of the WebSocket protocol (contract §3). Part of the wire: never rename or reuse one.
 * Only the auth codes close the socket.
 */
export const ErrorCode = {
  /** A frame other than `auth` came before authentication. */
  AuthRequired: 'auth_required',
  /** The token is wrong, expired or refused; the socket is closed with 4001. */
  AuthFailed: 'auth_failed',
  /** Not JSON, not an object, or a missing or wrong field. */
  InvalidMessage: 'invalid_message',
  UnknownType: 'unknown_type',
  Forbidden: 'forbidden',
  NotFound: 'not_found',
  RateLimited: 'rate_limited',
  PayloadTooLarge: 'payload_too_large',
  /** A backend (NATS, persistence, PostgreSQL) is down: retry later, with the same `client_msg_id`. */
  Unavailable: 'unavailable',
  Internal: 'internal',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** WebSocket close codes the gateway uses. */
export const CloseCode = {
  Normal: 1000,
  /** Server going away for a restart or drain: reconnect, to another pod. */
  ServiceRestart: 1012,
  /** A frame over MAX_FRAME_BYTES. */
  MessageTooBig: 1009,
  /** Abuse: sustained flooding far over the rate limit. */
  PolicyViolation: 1008,
  /** The client reads too slowly: its send buffer stayed over the limit. Reconnect and resync. */
  TryAgainLater: 1013,
  /** Authentication failed, timed out, or the token expired: get a new token before reconnecting. */
  AuthFailed: 4001,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];
