/**
 * The part of the WebSocket API the client uses. The browser's `WebSocket` and the `ws` package
 * both provide it, so the client works with either and imports neither.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: never) => void) | null;
  onmessage: ((event: never) => void) | null;
  onclose: ((event: never) => void) | null;
  onerror: ((event: never) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** What the client reads from the events (the handlers' parameters are `never` above so both APIs fit). */
export interface SocketMessageEvent {
  readonly data: unknown;
}
export interface SocketCloseEvent {
  readonly code: number;
  readonly reason: string;
}

export const OPEN = 1;
