import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from '@switchboard/testing';
import { onCleanup, trackChild } from './processes.js';

export interface PrivateNats {
  url: string;
  monitorUrl: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

export interface NatsConnection {
  cid: number;
  name?: string;
  /** The client's port. */
  port?: number;
  in_msgs: number;
  out_msgs: number;
  subscriptions: number;
  subscriptions_list?: string[];
}

const CANDIDATES = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];

export function natsServerBinary(): string | undefined {
  return process.env.NATS_SERVER_BIN ?? CANDIDATES.find((path) => existsSync(path));
}

/**
 * A NATS server of the bench's own (same binary as the machine's, JetStream on a temporary
 * directory) with its monitoring port open, so that the messages each gateway's connection
 * receives can be read from `/connz`. The machine's NATS has no monitoring port.
 */
export async function startPrivateNats(): Promise<PrivateNats | undefined> {
  const binary = natsServerBinary();
  if (!binary) return undefined;
  const port = await freePort();
  const monitorPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'bench-nats-'));
  const child = trackChild(
    spawn(binary, ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitorPort), '-js', '-sd', dir], { stdio: 'ignore' }),
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const monitorUrl = `http://127.0.0.1:${monitorPort}`;
  const stop = onCleanup(async () => {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    await waitFor(
      async () => {
        try {
          return (await fetch(`${monitorUrl}/healthz?js-enabled-only=true`)).ok;
        } catch {
          return false;
        }
      },
      10_000,
      'the bench NATS server',
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `nats://127.0.0.1:${port}`, monitorUrl, pid: child.pid, stop };
}

export async function connz(monitorUrl: string): Promise<NatsConnection[]> {
  const response = await fetch(`${monitorUrl}/connz?subs=1&limit=4096`);
  const body = (await response.json()) as { connections?: NatsConnection[] };
  return body.connections ?? [];
}
