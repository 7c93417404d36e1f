import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { authPerTest } from './auth-per-test.js';

const auth = authPerTest('auth_shutdown');

/** A request whose headers announce a body that never comes whole, as from a client that stalled. */
async function stalledRequest(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('error', () => undefined);
  socket.write('POST /v1/token HTTP/1.1\r\nHost: auth\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"user');
  return socket;
}

describe('stopping the auth service', () => {
  it('exits 0 within the contract 30 s although a client stopped halfway through a body', { timeout: 60_000 }, async () => {
    const service = await auth.start();
    const socket = await stalledRequest(service.port);
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));

    // Before, Fastify's close waited for that request for ever: "shutdown timed out" at 30 s, exit 1.
    expect(await service.stop(45_000)).toBe(0);
    expect(service.logs.some((line) => line.includes('shutdown timed out'))).toBe(false);
    await ended;
  });
});
