import type { AddressInfo } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';

/** A WebSocket server on loopback playing a gateway for the testing library's own tests: it says `connected`, then hands each frame to `onFrame`. */
export async function startStandInGateway(
  onFrame: (socket: WebSocket, frame: Record<string, unknown>) => void,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  server.on('connection', (socket) => {
    socket.send(JSON.stringify({ type: 'connected' }));
    socket.on('message', (data) => onFrame(socket, JSON.parse(data.toString()) as Record<string, unknown>));
  });
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
