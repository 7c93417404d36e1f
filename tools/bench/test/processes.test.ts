import { once } from 'node:events';
import { type AddressInfo, connect, createServer } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { localPortsTo } from '../src/processes.js';

describe('localPortsTo', () => {
  const server = createServer();
  afterAll(() => new Promise((resolve) => server.close(resolve)));

  it("finds the ports a process's TCP connections to a given port come from, and only those", async () => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const clients = [connect(port, '127.0.0.1'), connect(port, '127.0.0.1')];
    await Promise.all(clients.map((client) => once(client, 'connect')));
    try {
      const expected = clients.map((client) => client.localPort).sort();
      expect(localPortsTo(process.pid, port).sort()).toEqual(expected);
      // The server's side of the same connections is to other ports, and a port nobody uses has none.
      expect(localPortsTo(process.pid, expected[0] ?? 0)).toEqual([port]);
      expect(localPortsTo(process.pid, 1)).toEqual([]);
      expect(localPortsTo(2 ** 22 + 1, port)).toEqual([]);
    } finally {
      for (const client of clients) client.destroy();
    }
  });
});
