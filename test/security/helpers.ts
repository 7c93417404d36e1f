import { createPublicKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { type Socket, connect as tcpConnect } from 'node:net';
import { type Frame, TestClient } from '@switchboard/testing';
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';
import { expect } from 'vitest';

/** An Ed25519 signing key as the auth service takes it (`JWT_PRIVATE_KEY`), with its public JWK and kid. */
export interface Ed25519Key {
  pem: string;
  privateKey: KeyObject;
  publicJwk: JWK;
  /** The RFC 7638 thumbprint: the kid the auth service publishes for this key. */
  kid: string;
}

export async function ed25519Key(): Promise<Ed25519Key> {
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const publicJwk = await exportJWK(createPublicKey(privateKey));
  return { pem, privateKey, publicJwk, kid: await calculateJwkThumbprint(publicJwk) };
}

/** The base64 body of a PEM, without its armour lines and line breaks. */
export const pemBody = (pem: string) =>
  pem
    .split('\n')
    .filter((line) => line.length > 0 && !line.startsWith('-----'))
    .join('');

export const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A compact JWS over any header and payload, signed with an Ed25519 key: lets tests put whatever they like in both. */
export function signEdDSA(privateKey: KeyObject, header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const input = `${b64url({ alg: 'EdDSA', typ: 'JWT', ...header })}.${b64url(payload)}`;
  return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

/** The claims the auth service puts in an access token, valid for `ttlSeconds` from now. */
export function accessClaims(user: { id: number; username: string; role?: string }, ttlSeconds = 600): Record<string, unknown> {
  const now = nowSeconds();
  return {
    sub: String(user.id),
    role: user.role ?? 'user',
    username: user.username,
    iss: 'switchboard',
    aud: 'switchboard',
    iat: now,
    exp: now + ttlSeconds,
  };
}

/** Claims of a token without verifying it. */
export function decodeClaims(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** Connects, sends `auth` and returns the client with the reply. */
export async function authenticate(url: string, token: string): Promise<{ client: TestClient; reply: Frame }> {
  const client = await TestClient.connect(url);
  return { client, reply: await client.request({ type: 'auth', token }) };
}

/** Asserts what every refused token gets: `error` `auth_failed` (echoing the req_id), then close 4001. */
export async function expectRefused(url: string, token: string): Promise<void> {
  const { client, reply } = await authenticate(url, token);
  expect(reply).toMatchObject({ type: 'error', code: 'auth_failed' });
  expect(await client.closed).toBe(4001);
}

/**
 * For a token whose `kid` the gateway does not know: refused as above, or, while the gateway may
 * not ask the auth service for keys again yet (the key could be a new one), answered
 * `unavailable` with the socket left unauthenticated. Either way it authenticates nothing.
 */
export async function expectRefusedOrHeldBack(url: string, token: string): Promise<void> {
  const { client, reply } = await authenticate(url, token);
  if (reply.type === 'error' && reply.code === 'unavailable') {
    expect(await client.request({ type: 'list_sessions' })).toMatchObject({ type: 'error', code: 'auth_required' });
    await client.close();
    return;
  }
  expect(reply).toMatchObject({ type: 'error', code: 'auth_failed' });
  expect(await client.closed).toBe(4001);
}

export async function expectPong(client: TestClient, timeoutMs = 5_000): Promise<void> {
  expect(await client.request({ type: 'ping' }, timeoutMs)).toMatchObject({ type: 'pong', server_time: expect.any(String) });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A raw TCP connection that collects everything the server sends and notes when it closes. */
export interface RawConnection {
  socket: Socket;
  received(): Buffer;
  ended: Promise<void>;
}

export function rawConnect(port: number): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = tcpConnect(port, '127.0.0.1');
    const ended = new Promise<void>((done) => socket.once('close', () => done()));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, received: () => Buffer.concat(chunks), ended }));
    socket.once('error', reject);
  });
}

/** Resolves once `check` holds for what the connection has received, or rejects after `timeoutMs`. */
export async function waitForData(connection: RawConnection, check: (data: Buffer) => boolean, timeoutMs = 5_000): Promise<Buffer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const data = connection.received();
    if (check(data)) return data;
    if (Date.now() > deadline)
      throw new Error(`expected data not received within ${timeoutMs} ms; got ${JSON.stringify(data.toString('latin1').slice(0, 200))}`);
    await sleep(20);
  }
}

/** A client-to-server WebSocket frame: masked, as RFC 6455 requires of clients. */
export function clientFrame(opcode: number, payload: Buffer, fin: boolean): Buffer {
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const length = payload.length;
  const header =
    length < 126
      ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | length])
      : length < 65_536
        ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 126, length >> 8, length & 0xff])
        : (() => {
            const big = Buffer.alloc(10);
            big[0] = (fin ? 0x80 : 0) | opcode;
            big[1] = 0x80 | 127;
            big.writeBigUInt64BE(BigInt(length), 2);
            return big;
          })();
  const masked = Buffer.alloc(length);
  for (let i = 0; i < length; i++) masked[i] = (payload[i] ?? 0) ^ (mask[i % 4] ?? 0);
  return Buffer.concat([header, mask, masked]);
}

/** The unmasked frames a server sent, parsed from raw bytes (after the HTTP response). */
export function serverFrames(data: Buffer): { opcode: number; payload: Buffer }[] {
  const frames: { opcode: number; payload: Buffer }[] = [];
  let offset = 0;
  while (offset + 2 <= data.length) {
    const opcode = (data[offset] ?? 0) & 0x0f;
    let length = (data[offset + 1] ?? 0) & 0x7f;
    let start = offset + 2;
    if (length === 126) {
      if (start + 2 > data.length) break;
      length = data.readUInt16BE(start);
      start += 2;
    } else if (length === 127) {
      if (start + 8 > data.length) break;
      length = Number(data.readBigUInt64BE(start));
      start += 8;
    }
    if (start + length > data.length) break;
    frames.push({ opcode, payload: data.subarray(start, start + length) });
    offset = start + length;
  }
  return frames;
}

/** Performs the WebSocket opening handshake by hand; resolves with the connection once `101` arrived. */
export async function rawWebSocket(
  port: number,
): Promise<{ connection: RawConnection; frames: () => { opcode: number; payload: Buffer }[] }> {
  const connection = await rawConnect(port);
  connection.socket.write(
    [
      'GET /ws HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${Buffer.from('0123456789abcdef').toString('base64')}`,
      'Sec-WebSocket-Version: 13',
      '',
      '',
    ].join('\r\n'),
  );
  const head = await waitForData(connection, (data) => data.includes('\r\n\r\n'));
  expect(head.toString('latin1')).toMatch(/^HTTP\/1\.1 101 /);
  const bodyStart = () => connection.received().indexOf('\r\n\r\n') + 4;
  return { connection, frames: () => serverFrames(connection.received().subarray(bodyStart())) };
}
