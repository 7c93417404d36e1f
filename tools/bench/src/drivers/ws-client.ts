import { PendingReplies } from '@switchboard/testing';
import WebSocket from 'ws';

export type JsonFrame = { type: string; [key: string]: unknown };

/**
 * A JSON-over-WebSocket client connection with request/reply by `req_id`, shared by the
 * Switchboard and the plain-ws drivers. Frames without a pending `req_id` go to `onFrame`.
 */
export class JsonSocket {
  private readonly pending = new PendingReplies<string, JsonFrame>();
  private nextReqId = 1;
  closing = false;

  private constructor(
    readonly ws: WebSocket,
    private readonly onFrame: (frame: JsonFrame) => void,
  ) {
    ws.on('message', (data: Buffer) => {
      const frame = JSON.parse(data.toString('utf8')) as JsonFrame;
      const reqId = frame.req_id;
      // Only a reply is settled: the outcome is not built for every delivery the generator reads.
      if (typeof reqId === 'string' && this.pending.has(reqId)) {
        this.pending.settle(
          reqId,
          frame.type === 'error' ? { error: new Error(`${String(frame.code)}: ${String(frame.message)}`) } : { reply: frame },
        );
        return;
      }
      this.onFrame(frame);
    });
    ws.on('close', () => {
      this.pending.rejectAll(new Error('socket closed'));
    });
  }

  /** Opens a socket; resolves once it is open (and, with `firstFrame`, once that frame type arrived). */
  static open(url: string, onFrame: (frame: JsonFrame) => void, firstFrame?: string, timeoutMs = 20_000): Promise<JsonSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutMs });
      let socket: JsonSocket | undefined;
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`connecting to ${url} timed out`));
      }, timeoutMs);
      socket = new JsonSocket(ws, (frame) => {
        if (firstFrame && frame.type === firstFrame && socket) {
          clearTimeout(timer);
          const ready = socket;
          socket = undefined;
          resolve(ready);
          return;
        }
        onFrame(frame);
      });
      ws.once('open', () => {
        if (!firstFrame && socket) {
          clearTimeout(timer);
          resolve(socket);
        }
      });
      ws.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  request(frame: Record<string, unknown>, timeoutMs = 30_000): Promise<JsonFrame> {
    const reqId = `r${this.nextReqId++}`;
    const reply = this.pending.wait(reqId, String(frame.type), timeoutMs);
    try {
      this.ws.send(JSON.stringify({ ...frame, req_id: reqId }));
    } catch (error) {
      this.pending.settle(reqId, { error: error as Error });
    }
    return reply;
  }

  send(text: string): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  close(): Promise<void> {
    this.closing = true;
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, 2_000);
      this.ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.ws.close(1000);
    });
  }
}
