import type { Duplex } from 'node:stream';

/** Told once the frames held for its socket this turn have been handed to the socket. */
export interface FlushListener {
  flushed(): void;
}

let corked = new Map<Duplex, FlushListener | undefined>();

function uncorkAll(): void {
  // Swapped first: a listener that writes again (a close frame, say) starts the next batch.
  const batch = corked;
  corked = new Map();
  for (const socket of batch.keys()) socket.uncork();
  for (const listener of batch.values()) listener?.flushed();
}

/**
 * Holds a socket's writes until the end of this turn of the event loop, so that the frames it is
 * sent in one turn leave in one system call: the `new_message` and `message_ack` a sender gets
 * for its own message, or every event of a burst that arrived from NATS in one read. Each write
 * call on a loopback socket costs far more than the bytes in it, and was the gateway's largest
 * cost. The frames still leave before the event loop next waits for I/O, and then `listener` is
 * told: what the socket still buffers from then on is what its peer has not taken.
 */
export function batchWritesThisTurn(socket: Duplex, listener?: FlushListener): void {
  if (corked.has(socket)) return;
  if (corked.size === 0) setImmediate(uncorkAll);
  corked.set(socket, listener);
  socket.cork();
}
