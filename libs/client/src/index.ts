export type { Message, Role, Session } from '@switchboard/protocol';
export { type BackoffOptions, backoffDelay } from './backoff.js';
export {
  ChatClient,
  type ChatClientEvents,
  type ChatClientOptions,
  type ChatUser,
  type ConnectionState,
  type MessageAck,
  type SessionListOptions,
} from './chat-client.js';
export { Emitter, type Listener } from './emitter.js';
export { ChatError, type ChatErrorCode } from './errors.js';
export type { SendResult } from './outbox.js';
export type { SocketCloseEvent, SocketMessageEvent, WebSocketConstructor, WebSocketLike } from './socket.js';
