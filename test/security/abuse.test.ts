/**
 * Abuse at the gateway's edge: cross-site WebSocket hijacking, oversized upgrade requests, floods
 * of fragments and of frames. Each one is refused or cut off, the process survives with bounded
 * memory, and other clients keep being served while it happens.
 */
import { metric, type ServiceProcess, type Stack, startStack, TestClient } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { authenticate, clientFrame, expectPong, rawConnect, rawWebSocket, sleep, waitForData } from './helpers.js';

const ALLOWED_ORIGIN = 'https://support.example.com';
const MiB = 1024 * 1024;

let stack: Stack;
/** The gateway under attack: an Origin allow-list and a short auth timeout. */
let gateway: ServiceProcess;
let customer: { id: number; token: string };
let bystander: TestClient;
const url = () => `ws://127.0.0.1:${gateway.port}/ws`;
/** The gateway's resident memory; never 0, so that a missing metric cannot pass for no growth. */
const rss = async () => {
  const bytes = await metric(gateway, 'process_resident_memory_bytes');
  expect(bytes).toBeGreaterThan(0);
  return bytes;
};

/** The status of the HTTP answer to an upgrade, or 101 when the socket opened. */
function upgradeStatus(target: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target, { headers });
    ws.once('open', () => {
      ws.terminate();
      resolve(101);
    });
    ws.once('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

beforeAll(async () => {
  stack = await startStack({ gateways: 0 });
  gateway = await stack.startGateway({ ALLOWED_ORIGINS: ALLOWED_ORIGIN, AUTH_TIMEOUT_MS: '1500' });
  customer = await stack.user('user');
  const { client, reply } = await authenticate(url(), customer.token);
  expect(reply.type).toBe('auth_success');
  bystander = client;
});

afterAll(async () => {
  await bystander?.close();
  await stack?.stop();
});

describe('cross-site WebSocket hijacking', () => {
  it.each([
    'https://evil.example',
    'null',
    'https://support.example.com.evil.example',
    'http://support.example.com',
    'https://support.example.com:8443',
  ])('refuses the upgrade from Origin %s with 403, cookies or not', async (origin) => {
    expect(await upgradeStatus(url(), { origin })).toBe(403);
    expect(await upgradeStatus(url(), { origin, cookie: `token=${customer.token}; access_token=${customer.token}` })).toBe(403);
  });

  it('grants nothing for a token in a cookie, an Authorization header or the query string: only the auth frame counts', async () => {
    const client = await TestClient.connect(`${url()}?token=${customer.token}&access_token=${customer.token}`, {
      origin: ALLOWED_ORIGIN,
      headers: {
        cookie: `token=${customer.token}; access_token=${customer.token}; session=${customer.token}`,
        authorization: `Bearer ${customer.token}`,
      },
    });
    expect(await client.request({ type: 'create_session' })).toMatchObject({ type: 'error', code: 'auth_required' });
    expect(await client.request({ type: 'list_sessions' })).toMatchObject({ type: 'error', code: 'auth_required' });
    // Never authenticated: the auth timeout closes it like any other silent socket.
    expect(await client.closed).toBe(4001);
    expect(client.frames.some((frame) => frame.type === 'auth_success')).toBe(false);
  });
});

describe('oversized upgrade requests', () => {
  it('refuses an upgrade carrying 5,000 headers and keeps serving', async () => {
    const connection = await rawConnect(gateway.port);
    const pad = Array.from({ length: 5_000 }, (_, i) => `X-Pad-${i}: v`).join('\r\n');
    connection.socket.write(
      `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Buffer.from('0123456789abcdef').toString('base64')}\r\nSec-WebSocket-Version: 13\r\n${pad}\r\n\r\n`,
    );
    await connection.ended;
    const answer = connection.received().toString('latin1');
    // Node's HTTP parser answers 431 (headers over --max-http-header-size) or just closes.
    if (answer.length > 0) expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(answer).not.toMatch(/ 101 /);

    const { client, reply } = await authenticate(url(), customer.token);
    expect(reply.type).toBe('auth_success');
    await client.close();
    await expectPong(bystander);
  });
});

describe('fragment floods', () => {
  const pingSplitInto = (fragments: number) => {
    const text = Buffer.from(`{"type":"ping","req_id":"fragmented"${' '.repeat(Math.max(0, fragments - 37))}}`);
    expect(text.length).toBe(Math.max(fragments, 37));
    return Buffer.concat(Array.from(text, (byte, i) => clientFrame(i === 0 ? 0x1 : 0x0, Buffer.from([byte]), i === text.length - 1)));
  };

  it('reassembles a message sent as 4,000 one-byte fragments', async () => {
    const { connection, frames } = await rawWebSocket(gateway.port);
    connection.socket.write(pingSplitInto(4_000));
    await waitForData(connection, () => frames().some((frame) => frame.payload.toString().includes('"pong"')));
    const pong = frames().find((frame) => frame.payload.toString().includes('"pong"'));
    expect(JSON.parse(pong?.payload.toString() ?? '')).toMatchObject({ type: 'pong', req_id: 'fragmented' });
    connection.socket.destroy();
  });

  it('closes an authenticated socket sending one message as 50,000 one-byte fragments, with memory bounded', async () => {
    const before = await rss();
    const sockets = await Promise.all(Array.from({ length: 4 }, () => rawWebSocket(gateway.port)));
    // Authenticated first: before, a socket may send only MAX_FRAME_BYTES in all (closed with 1009
    // past it, as in edge.integration.test.ts), and such a flood would never reach ws's own limit.
    for (const { connection, frames } of sockets) {
      connection.socket.write(clientFrame(0x1, Buffer.from(JSON.stringify({ type: 'auth', token: customer.token })), true));
      await waitForData(connection, () => frames().some((frame) => frame.payload.toString().includes('"auth_success"')));
    }
    const flood = pingSplitInto(50_000);
    for (const { connection } of sockets) connection.socket.write(flood);
    for (const { connection, frames } of sockets) {
      await Promise.race([connection.ended, waitForData(connection, () => frames().some((frame) => frame.opcode === 0x8), 10_000)]);
      const close = frames().find((frame) => frame.opcode === 0x8);
      // ws refuses more than 16,384 fragments per message: close 1008 ("Too many message fragments").
      if (close) expect(close.payload.readUInt16BE(0)).toBe(1008);
      expect(frames().some((frame) => frame.payload.toString().includes('"pong"'))).toBe(false);
      connection.socket.destroy();
    }
    expect((await rss()) - before).toBeLessThan(64 * MiB);
    await expectPong(bystander);
  });
});

describe('frame floods', () => {
  /** Sends about 1,000 frames a second for up to 3 s, or until the socket is closed. */
  async function flood(client: TestClient, frame: () => string | Buffer): Promise<number> {
    const started = Date.now();
    let sent = 0;
    while (Date.now() - started < 3_000 && client.closeCode === undefined && client.ws.readyState === WebSocket.OPEN) {
      for (let i = 0; i < 10; i++) client.ws.send(frame());
      sent += 10;
      await sleep(10);
    }
    return sent;
  }

  /**
   * Pings every 100 ms while `during` runs, each to be answered (the time allowed is a liveness
   * bound, not a speed: the bench measures speed); returns how many were answered.
   */
  async function watch(client: TestClient, during: Promise<unknown>): Promise<number> {
    let done = false;
    let answered = 0;
    void during.finally(() => {
      done = true;
    });
    while (!done) {
      await expectPong(client, 2_000);
      answered++;
      await sleep(100);
    }
    return answered;
  }

  it.each<[string, () => string | Buffer]>([
    ['pings', () => JSON.stringify({ type: 'ping' })],
    ['sends', () => JSON.stringify({ type: 'send_message', session_id: 1, content: 'spam' })],
    ['frames that are not JSON', () => '{{{{ not json'],
    ['binary frames', () => Buffer.from([1, 2, 3, 4])],
    ['frames over MAX_FRAME_BYTES', () => 'x'.repeat(70_000)],
  ])('answers a flood of %s with rate_limited, closes the abuser with 1008 and keeps serving others', async (_kind, frame) => {
    const before = await rss();
    const { client: abuser, reply } = await authenticate(url(), customer.token);
    expect(reply.type).toBe('auth_success');
    const flooding = flood(abuser, frame);
    const answered = await watch(bystander, flooding);
    await flooding;
    expect(await Promise.race([abuser.closed, sleep(2_000).then(() => 'still open')])).toBe(1008);
    expect(abuser.frames.filter((received) => received.code === 'rate_limited').length).toBeGreaterThan(0);
    expect(answered).toBeGreaterThan(0);
    expect((await rss()) - before).toBeLessThan(64 * MiB);
    await expectPong(bystander);
  });
});
