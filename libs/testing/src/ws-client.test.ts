import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStandInGateway } from './stand-in-gateway.js';
import { TestClients } from './ws-client.js';

/** A stand-in gateway: says `connected`, and takes the token `good` only. */
let gateway: Awaited<ReturnType<typeof startStandInGateway>>;
let url: string;

beforeAll(async () => {
  gateway = await startStandInGateway((socket, frame) => {
    const reply = frame.token === 'good' ? { type: 'auth_success' } : { type: 'error', code: 'auth_failed' };
    socket.send(JSON.stringify({ ...reply, req_id: frame.req_id }));
  });
  url = gateway.url;
});

afterAll(async () => {
  await gateway.close();
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
