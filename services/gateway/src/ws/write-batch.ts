import type { Duplex } from 'node:stream';

const corked = new Set<Duplex>();

function uncorkAll(): void {
  for (const socket of corked) socket.uncork();
  corked.clear();
}

/**
 * Holds a socket's writes until the end of this turn of the event loop, so that the frames it is
 * sent in one turn leave in one system call: the `new_message` and `message_ack` a sender gets
 * for its own message, or every event of a burst that arrived from NATS in one read. Each write
 * call on a loopback socket costs far more than the bytes in it, and was the gateway's largest
 * cost. The frames still leave before the event loop next waits for I/O.
 */
export function batchWritesThisTurn(socket: Duplex): void {
  if (corked.has(socket)) return;
  if (corked.size === 0) setImmediate(uncorkAll);
  corked.add(socket);
  socket.cork();
}
