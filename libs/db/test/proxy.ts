import { once } from 'node:events';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

export interface PostgresProxy {
  readonly server: Server;
  /** The database URL with the proxy's port. */
  readonly url: string;
  /** A reset of every connection, as when the server dies: the client reads ECONNRESET. */
  reset(): void;
  /** The connections made so far stay open but pass nothing either way, as across a partition; later ones work. */
  partition(): number;
}

/** A TCP proxy to the real PostgreSQL behind `target`, whose connections a test can break. Closing the server closes them. */
export async function postgresProxy(target: string): Promise<PostgresProxy> {
  const targetUrl = new URL(target);
  const pairs = new Set<{ client: Socket; upstream: Socket; silent: boolean }>();
  const server = createServer((client) => {
    const upstream = tcpConnect(Number(targetUrl.port || 5432), targetUrl.hostname);
    const pair = { client, upstream, silent: false };
    pairs.add(pair);
    client.on('data', (chunk) => pair.silent || upstream.write(chunk));
    upstream.on('data', (chunk) => pair.silent || client.write(chunk));
    for (const socket of [client, upstream])
      socket
        .on('error', () => undefined)
        .on('close', () => {
          client.destroy();
          upstream.destroy();
          pairs.delete(pair);
        });
  });
  server.on('close', () => {
    for (const { client, upstream } of pairs) {
      client.destroy();
      upstream.destroy();
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const url = new URL(target);
  url.port = String(typeof address === 'object' && address ? address.port : 0);
  return {
    server,
    url: url.toString(),
    reset: () => {
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
    },
    partition: () => {
      let silenced = 0;
      for (const pair of pairs) {
        if (!pair.silent) silenced++;
        pair.silent = true;
      }
      return silenced;
    },
  };
}
