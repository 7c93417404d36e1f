import { connect, type Socket } from 'node:net';
import { waitFor } from '@switchboard/testing';
import { describe, expect, it } from 'vitest';
import { authPerTest } from './auth-per-test.js';

const auth = authPerTest('auth_shutdown');

const BODY = JSON.stringify({ username: 'nobody', password: 'not-a-password' }).padEnd(100, ' ');
const BODY_START = 6;

/** A request whose headers announce a body that has not come whole (yet), as from a client that stalled. */
async function stalledRequest(port: number, { expectContinue = false } = {}): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('error', () => undefined);
  // With `Expect: 100-continue` the server answers `100 Continue` once it has read the headers.
  const expect = expectContinue ? 'Expect: 100-continue\r\n' : '';
  socket.write(
    `POST /v1/token HTTP/1.1\r\nHost: auth\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n${expect}\r\n${BODY.slice(0, BODY_START)}`,
  );
  return socket;
}

/** The last HTTP response in what a socket received: status, headers (lowercase names) and body. */
function lastResponse(received: string): { status: number; headers: Record<string, string>; body: string } {
  const start = received.lastIndexOf('HTTP/1.1 ');
  const [head = '', body = ''] = received.slice(start).split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(
    lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
  );
  return { status: Number(statusLine.split(' ')[1]), headers, body };
}

describe('stopping the auth service', () => {
  it('exits 0 within the contract 30 s although a client stopped halfway through a body', { timeout: 60_000 }, async () => {
    const service = await auth.start();
    const socket = await stalledRequest(service.port, { expectContinue: true });
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
    });
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // In flight when the stop begins: on a busy machine the server could otherwise read the
    // request only after, and the stop, finding none, tested nothing (and once left this socket
    // waiting past the test's timeout).
    await waitFor(() => received.startsWith('HTTP/1.1 100 Continue'), 10_000, 'the server to take the request in');

    // Before, Fastify's close waited for that request for ever: "shutdown timed out" at 30 s, exit 1.
    expect(await service.stop(45_000)).toBe(0);
    expect(service.logs.some((line) => line.includes('shutdown timed out'))).toBe(false);
    await ended;
  });

  it("answers a request that comes in while it stops with 503 unavailable, in the API's error shape", { timeout: 60_000 }, async () => {
    const service = await auth.start();
    const socket = await stalledRequest(service.port, { expectContinue: true });
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
    });
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // The server has taken the request in before the stop begins: on a busy machine it could
    // otherwise read it only after, answer it 503 and close, and the one behind it never came.
    await waitFor(() => received.startsWith('HTTP/1.1 100 Continue'), 10_000, 'the server to take the request in');

    const stopped = service.stop(45_000);
    // Not ready any more: the stop has begun, and with it the HTTP server's close.
    await waitFor(async () => (await fetch(service.opsUrl('/readyz')).catch(() => undefined))?.status !== 200, 10_000, 'the stop');
    // The first request's body, and a second request behind it on the same connection.
    socket.write(`${BODY.slice(BODY_START)}GET /v1/jwks HTTP/1.1\r\nHost: auth\r\nOrigin: https://chat.example.com\r\n\r\n`);
    await ended;

    // The two requests' answers, after the interim 100 Continue.
    expect(received.match(/HTTP\/1\.1 (?!100 )/g)).toHaveLength(2);
    const refused = lastResponse(received);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.headers.connection).toBe('close');
    // A browser on another origin (the demo page) can read it.
    expect(refused.headers['access-control-allow-origin']).toBeDefined();
    // Before, Fastify's own body: {"error":"Service Unavailable","message":...,"statusCode":503}.
    expect(JSON.parse(refused.body)).toEqual({ error: { code: 'unavailable', message: expect.stringContaining('stopping') } });
    expect(await stopped).toBe(0);
  });
});
