import { once } from 'node:events';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

interface Pair {
  client: Socket;
  upstream: Socket;
  /** Passes nothing either way, as across a network partition. */
  silent: boolean;
  /** The client's write from which the pair falls silent (`hangWhen`); none: no such rule. */
  hangsAt: ((chunk: Buffer) => boolean) | undefined;
}

/**
 * A TCP proxy on loopback to a real server (PostgreSQL, NATS) whose connections a test can
 * break the ways a network does: cut (closed, and new ones refused until restored), reset, or
 * silenced (open, but passing nothing).
 */
export class TcpProxy {
  private readonly pairs = new Set<Pair>();
  private cutOff = false;
  /** New connections are taken and pass nothing, as to a host that drops packets. */
  private blackholed = false;
  /** New connections fall silent at the client's first write this matches (`hangWhen`). */
  private hangsAt: ((chunk: Buffer) => boolean) | undefined;
  /** Connections refused while cut. */
  refused = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** A proxy to the PostgreSQL server a `postgres://` URL names (port 5432 when it names none). */
  static toPostgres(url: string): Promise<TcpProxy> {
    const { hostname, port } = new URL(url);
    return TcpProxy.start({ host: hostname, port: Number(port || 5432) });
  }

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => {
      if (!proxy || proxy.cutOff) {
        if (proxy) proxy.refused++;
        client.destroy();
        return;
      }
      const pairs = proxy.pairs;
      const pair: Pair = {
        client,
        upstream: tcpConnect(target.port, target.host),
        silent: proxy.blackholed,
        hangsAt: proxy.hangsAt,
      };
      pairs.add(pair);
      client.on('data', (chunk: Buffer) => {
        if (pair.hangsAt?.(chunk)) pair.silent = true;
        if (!pair.silent) pair.upstream.write(chunk);
      });
      pair.upstream.on('data', (chunk) => pair.silent || client.write(chunk));
      for (const socket of [client, pair.upstream])
        socket
          .on('error', () => undefined)
          .on('close', () => {
            client.destroy();
            pair.upstream.destroy();
            pairs.delete(pair);
          });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    proxy = new TcpProxy(server, typeof address === 'object' && address ? address.port : 0);
    return proxy;
  }

  /** `url` (a database or NATS URL) with its port changed to the proxy's. */
  url(url: string): string {
    const via = new URL(url);
    via.port = String(this.port);
    return via.toString();
  }

  /** Closes every connection, and refuses new ones until `restore()`. */
  cut(): void {
    this.cutOff = true;
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  restore(): void {
    this.cutOff = false;
    this.blackholed = false;
    this.hangsAt = undefined;
  }

  /**
   * New connections, until `restore()`, pass everything until the client's first write that
   * `hangsAt` matches, then fall silent: with `startsAStatement`, a PostgreSQL connection opens,
   * however it authenticates, and its first statement hangs.
   */
  hangWhen(hangsAt: (chunk: Buffer) => boolean): void {
    this.hangsAt = hangsAt;
  }

  /** A client's write to PostgreSQL that starts a statement: a simple query ('Q') or the Parse of an extended one ('P'). */
  static startsAStatement(chunk: Buffer): boolean {
    return chunk[0] === 0x51 || chunk[0] === 0x50;
  }

  /** Every connection, open or new, is taken and passes nothing, until `restore()`: a client's dials hang. */
  blackhole(): void {
    this.blackholed = true;
    this.partition();
  }

  /** Resets every connection, as when the server dies: the client reads ECONNRESET. New ones still work. */
  reset(): void {
    for (const { client, upstream } of this.pairs) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
  }

  /** The connections made so far stay open but pass nothing either way; later ones work. Returns how many it silenced. */
  partition(): number {
    let silenced = 0;
    for (const pair of this.pairs) {
      if (!pair.silent) silenced++;
      pair.silent = true;
    }
    return silenced;
  }

  async close(): Promise<void> {
    this.cut();
    this.server.close();
    await once(this.server, 'close').catch(() => undefined);
  }
}
