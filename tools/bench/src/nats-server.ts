import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NatsServer, natsServerBinary } from '@switchboard/testing';
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

/**
 * A NATS server of the bench's own (same binary as the machine's, JetStream on a temporary
 * directory) with its monitoring port open, so that the messages each gateway's connection
 * receives can be read from `/connz`. The machine's NATS has no monitoring port.
 */
export async function startPrivateNats(): Promise<PrivateNats | undefined> {
  if (!natsServerBinary()) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'bench-nats-'));
  const server = await NatsServer.start(dir).catch((error: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  if (server.child) trackChild(server.child);
  const stop = onCleanup(async () => {
    await server.stop();
    await server.remove();
  });
  return { url: server.url, monitorUrl: server.monitorUrl, pid: server.child?.pid, stop };
}

export async function connz(monitorUrl: string): Promise<NatsConnection[]> {
  const response = await fetch(`${monitorUrl}/connz?subs=1&limit=4096`);
  const body = (await response.json()) as { connections?: NatsConnection[] };
  return body.connections ?? [];
}
