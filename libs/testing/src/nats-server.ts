import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { waitFor } from './service-process.js';

/** What tests read of a server's `/jsz`. */
export interface JetStreamInfo {
  meta_cluster?: { leader?: string };
  account_details?: {
    stream_detail?: { name: string; cluster?: { leader?: string }; consumer_detail?: { name: string; cluster?: { leader?: string } }[] }[];
  }[];
}

const CANDIDATES = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];

/** The `nats-server` binary: `NATS_SERVER_BIN`, else the first of the usual places that has one. */
export function natsServerBinary(): string | undefined {
  return process.env.NATS_SERVER_BIN ?? CANDIDATES.find((path) => existsSync(path));
}

export interface RestartOptions {
  /** With JetStream (the default), or as a server that has none: JetStream requests get no answer. */
  jetStream?: boolean;
}

/**
 * A nats-server of the test's own (JetStream on a store directory), on loopback, that can be
 * killed and restarted on the same ports and store, with other arguments if need be (a user and
 * password): for tests of restarts and of what a shared NATS cannot be made to do.
 */
export class NatsServer {
  child: ChildProcess | undefined;
  readonly logs: string[] = [];

  private constructor(
    readonly storeDir: string,
    readonly port: number,
    readonly monitorPort: number,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Its monitoring endpoints (`/healthz`, `/connz`, …). */
  get monitorUrl(): string {
    return `http://127.0.0.1:${this.monitorPort}`;
  }

  /**
   * Starts a server on free ports. A port found free can still be taken before the server binds
   * it: it is then started again on fresh ones (twice at most), as `startProcess` does.
   */
  static async start(storeDir: string, args: readonly string[] = [], options: RestartOptions = {}): Promise<NatsServer> {
    for (let attempt = 1; ; attempt++) {
      const server = new NatsServer(storeDir, await freePort(), await freePort());
      try {
        await server.restart(args, options);
        return server;
      } catch (error) {
        if (attempt >= 3 || !server.logs.some((chunk) => chunk.includes('address already in use'))) throw error;
      }
    }
  }

  /**
   * A JetStream cluster of `size` servers (`n0`, `n1`, …), each with a store directory of its own
   * under `storeRoot`, routed to one another, once it has elected its meta leader.
   */
  static async startCluster(storeRoot: string, size = 3): Promise<NatsServer[]> {
    const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
    const routes = routePorts.map((port) => `nats://127.0.0.1:${port}`).join(',');
    const started = await Promise.allSettled(
      routePorts.map((port, index) =>
        NatsServer.start(join(storeRoot, `n${index}`), [
          '-n',
          `n${index}`,
          '--cluster_name',
          'switchboard-test',
          '--cluster',
          `nats://127.0.0.1:${port}`,
          '--routes',
          routes,
        ]),
      ),
    );
    const servers = started.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
    try {
      const failed = started.find((outcome) => outcome.status === 'rejected');
      if (failed) throw failed.reason;
      await waitFor(async () => (await servers[0]?.jetStreamInfo())?.meta_cluster?.leader !== undefined, 30_000, 'a JetStream meta leader');
      return servers;
    } catch (error) {
      await Promise.all(servers.map((server) => server.kill()));
      throw error;
    }
  }

  /** `/jsz` with every stream's consumers: where their leaders are, say. */
  async jetStreamInfo(): Promise<JetStreamInfo | undefined> {
    return fetch(`${this.monitorUrl}/jsz?accounts=true&streams=true&consumers=true`).then(
      (response) => (response.ok ? (response.json() as Promise<JetStreamInfo>) : undefined),
      () => undefined,
    );
  }

  /**
   * Starts the server (again, on the same ports and store) and waits until it is up, JetStream
   * included unless `jetStream` is false; one that does not come up is killed.
   */
  async restart(args: readonly string[] = [], { jetStream = true }: RestartOptions = {}): Promise<void> {
    const child = spawn(
      natsServerBinary() ?? 'nats-server',
      [
        ...(jetStream ? ['-js', '-sd', this.storeDir] : []),
        ...['-a', '127.0.0.1', '-p', String(this.port), '-m', String(this.monitorPort)],
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    for (const stream of [child.stdout, child.stderr]) stream?.setEncoding('utf8').on('data', (chunk: string) => this.logs.push(chunk));
    try {
      await waitFor(
        async () => {
          if (child.exitCode !== null) throw new Error(`nats-server exited:\n${this.logs.join('')}`);
          return fetch(`${this.monitorUrl}/healthz${jetStream ? '?js-enabled-only=true' : ''}`).then(
            (response) => response.ok,
            () => false,
          );
        },
        15_000,
        'nats-server to start',
      );
    } catch (error) {
      await this.kill();
      throw error;
    }
  }

  /** `kill -9`. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** Stops it and deletes its store. */
  async remove(): Promise<void> {
    await this.kill();
    await rm(this.storeDir, { recursive: true, force: true });
  }
}
