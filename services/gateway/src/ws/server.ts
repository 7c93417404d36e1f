import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '@switchboard/logging';
import { type WebSocket, WebSocketServer } from 'ws';

export const WEBSOCKET_PATHS = new Set(['/', '/ws']);
/** Frames above MAX_FRAME_BYTES get an error; above this multiple of it, ws closes the socket with 1009. */
export const HARD_FRAME_LIMIT_FACTOR = 16;

export interface WsServerOptions {
  maxFrameBytes: number;
  /** Origins as browsers send them (`https://chat.example.com`); empty, or holding `*`, accepts any. */
  allowedOrigins: readonly string[];
  logger: Logger;
  /** False while draining: new upgrades get 503. */
  isAccepting: () => boolean;
  onConnection: (ws: WebSocket, request: IncomingMessage, socket: Duplex) => void;
  /** Serves plain HTTP requests (the demo page); 404 when absent. */
  onHttpRequest?: Parameters<typeof createServer>[1];
}

function destroySocket(this: Duplex): void {
  this.destroy();
}

/**
 * Answers an upgrade with an HTTP error and closes the socket once the answer is written: ended
 * alone, it stayed open until the client closed its side, and Node's request timeouts no longer
 * watch a socket handed to the upgrade listener. Any client could hold a descriptor each that way.
 */
function refuseUpgrade(socket: Duplex, status: number, reason: string): void {
  socket.once('finish', destroySocket);
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(reason)}\r\n\r\n${reason}`,
  );
}

/**
 * The HTTP server that WebSocket upgrades arrive on. Checks the path and the Origin (against
 * cross-site WebSocket hijacking; clients that send no Origin are not browsers and pass) before
 * the upgrade, with no permessage-deflate.
 */
export function createWsServer(options: WsServerOptions): Server {
  const { maxFrameBytes, logger, isAccepting, onConnection } = options;
  const allowedOrigins =
    options.allowedOrigins.length === 0 || options.allowedOrigins.includes('*') ? undefined : new Set(options.allowedOrigins);
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    // Pings are answered by the connection, against the client's rate like any frame (ws would
    // answer each one with a write of its own, however many come).
    autoPong: false,
    clientTracking: false,
    maxPayload: maxFrameBytes * HARD_FRAME_LIMIT_FACTOR,
  });
  const server = createServer(
    options.onHttpRequest ??
      ((_request, response) => {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('Switchboard gateway: open a WebSocket on / or /ws\n');
      }),
  );
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // A module-level listener: a closure here would keep every upgrade request alive as long as its socket.
    socket.on('error', destroySocket);
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    if (!WEBSOCKET_PATHS.has(path)) return refuseUpgrade(socket, 404, 'Not Found');
    if (!isAccepting()) return refuseUpgrade(socket, 503, 'Service Unavailable');
    const origin = request.headers.origin;
    if (origin !== undefined && allowedOrigins !== undefined && !allowedOrigins.has(origin)) {
      logger.info({ origin: origin.slice(0, 200) }, 'upgrade refused: origin not allowed');
      return refuseUpgrade(socket, 403, 'Forbidden');
    }
    wss.handleUpgrade(request, socket, head, (ws) => onConnection(ws, request, socket));
  });
  // Once listening, an error (a connection that cannot be accepted: out of file descriptors in a
  // reconnect storm) is logged; with no listener it would end the process and every socket on it.
  server.once('listening', () => {
    server.on('error', (error) => logger.error({ err: error }, 'the WebSocket server failed to accept a connection'));
  });
  return server;
}
