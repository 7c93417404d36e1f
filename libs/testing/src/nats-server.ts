import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { freePort } from './ports.js';
import { waitFor } from './service-process.js';

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

  static async start(storeDir: string, args: readonly string[] = []): Promise<NatsServer> {
    const server = new NatsServer(storeDir, await freePort(), await freePort());
    await server.restart(args);
    return server;
  }

  /** Starts the server (again, on the same ports and store) and waits until JetStream is up. */
  async restart(args: readonly string[] = []): Promise<void> {
    const child = spawn(
      'nats-server',
      ['-js', '-sd', this.storeDir, '-a', '127.0.0.1', '-p', String(this.port), '-m', String(this.monitorPort), ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    for (const stream of [child.stdout, child.stderr]) stream?.setEncoding('utf8').on('data', (chunk: string) => this.logs.push(chunk));
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`nats-server exited:\n${this.logs.join('')}`);
        return fetch(`http://127.0.0.1:${this.monitorPort}/healthz?js-enabled-only=true`).then(
          (response) => response.ok,
          () => false,
        );
      },
      15_000,
      'nats-server to start',
    );
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
