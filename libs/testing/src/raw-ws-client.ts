import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect as connectTcp, type Socket } from 'node:net';

export interface RawWsClient {
  sendText(text: string): void;
  /** Sends a close frame, and keeps TCP open: a client that closes and then goes quiet. */
  sendClose(code: number): void;
  /** Sends a ping control frame. */
  sendPing(payload?: Buffer): void;
  /** Starts a text frame announcing `length` bytes and sends `part` of them only: the rest never comes. */
  sendTextStart(length: number, part: Buffer): void;
  /** How many pong frames the server has sent. */
  readonly pongs: number;
  /** The code of the first close frame the server sends. */
  closeFrame: Promise<number>;
  /** Text frames received, parsed. */
  frames: Record<string, unknown>[];
  socket: Socket;
}

/**
 * A client that speaks WebSocket by hand on `ws://127.0.0.1:<port>/ws` and ignores the close
 * frames it receives, as a hostile one may: `ws` would answer them and stop sending.
 */
export async function rawWsClient(port: number): Promise<RawWsClient> {
  // Half-open allowed: the server's FIN does not end the client's side, which stays open until
  // the test destroys it, as a client gone quiet behind a NAT's stale mapping would.
  const socket = connectTcp({ port, host: '127.0.0.1', allowHalfOpen: true });
  await once(socket, 'connect');
  const key = randomBytes(16).toString('base64');
  socket.write(
    `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let buffered = Buffer.alloc(0);
  let upgraded = false;
  const frames: Record<string, unknown>[] = [];
  let pongs = 0;
  const closeFrame = new Promise<number>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!upgraded) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        upgraded = true;
        buffered = buffered.subarray(end + 4);
      }
      // Server frames are unmasked and unfragmented: opcode, a 7-, 16- or 64-bit length, the payload.
      while (buffered.length >= 2) {
        const opcode = (buffered[0] ?? 0) & 0x0f;
        let length = (buffered[1] ?? 0) & 0x7f;
        let start = 2;
        if (length === 126) {
          if (buffered.length < 4) return;
          length = buffered.readUInt16BE(2);
          start = 4;
        } else if (length === 127) {
          if (buffered.length < 10) return;
          length = Number(buffered.readBigUInt64BE(2));
          start = 10;
        }
        if (buffered.length < start + length) return;
        const payload = buffered.subarray(start, start + length);
        if (opcode === 0x8) resolve(payload.readUInt16BE(0));
        if (opcode === 0x1) frames.push(JSON.parse(payload.toString('utf8')) as Record<string, unknown>);
        if (opcode === 0xa) pongs++;
        buffered = buffered.subarray(start + length);
      }
    });
  });
  const sendFrame = (opcode: number, payload: Buffer) => {
    const mask = randomBytes(4);
    const header =
      payload.length < 126
        ? Buffer.from([0x80 | opcode, 0x80 | payload.length])
        : Buffer.from([0x80 | opcode, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
    socket.write(Buffer.concat([header, mask, payload.map((byte, i) => byte ^ (mask[i % 4] ?? 0))]));
  };
  const sendTextStart = (length: number, part: Buffer) => {
    const mask = randomBytes(4);
    const header = Buffer.alloc(10);
    header[0] = 0x81;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
    socket.write(Buffer.concat([header, mask, part.map((byte, i) => byte ^ (mask[i % 4] ?? 0))]));
  };
  const sendClose = (code: number) => {
    const payload = Buffer.alloc(2);
    payload.writeUInt16BE(code);
    sendFrame(0x8, payload);
  };
  return {
    sendText: (text) => sendFrame(0x1, Buffer.from(text)),
    sendClose,
    sendPing: (payload = Buffer.alloc(0)) => sendFrame(0x9, payload),
    sendTextStart,
    get pongs() {
      return pongs;
    },
    closeFrame,
    frames,
    socket,
  };
}
