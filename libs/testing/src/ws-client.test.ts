import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { TestClients } from './ws-client.js';

/** A stand-in gateway: says `connected`, and takes the token `good` only. */
let server: WebSocketServer;
let url: string;

beforeAll(async () => {
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  server.on('connection', (socket) => {
    socket.send(JSON.stringify({ type: 'connected' }));
    socket.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as { token?: string; req_id?: string };
      const reply = frame.token === 'good' ? { type: 'auth_success' } : { type: 'error', code: 'auth_failed' };
      socket.send(JSON.stringify({ ...reply, req_id: frame.req_id }));
    });
  });
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

describe('TestClients', () => {
  it('opens clients, authenticated or not, and closes every one it opened', async () => {
    const clients = new TestClients();
    const authenticated = await clients.authenticated(url, 'good');
    const plain = await clients.connect(url);
    expect(authenticated.frames.at(-1)).toMatchObject({ type: 'auth_success' });
    expect(plain.frames.map((frame) => frame.type)).toEqual(['connected']);
    await clients.closeAll();
    expect(authenticated.closeCode).toBeDefined();
    expect(plain.closeCode).toBeDefined();
  });

  it('fails with the reply when the token is refused', async () => {
    const clients = new TestClients();
    try {
      await expect(clients.authenticated(url, 'bad')).rejects.toThrow(/auth answered .*"code":"auth_failed"/);
    } finally {
      await clients.closeAll();
    }
  });
});
