import { Writable } from 'node:stream';
import { createLogger } from '@switchboard/logging';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { type OpsServer, startOpsServer } from '../src/ops-server.js';

const servers: OpsServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** An ops server whose readiness check throws, so that `/readyz` logs an error, under a logger at `level`. */
async function failingOpsServer(level: string): Promise<{ server: OpsServer; lines: string[] }> {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      callback();
    },
  });
  const server = await startOpsServer({
    port: 0,
    host: '127.0.0.1',
    registry: new Registry(),
    checks: {
      broken: () => {
        throw new Error('check failed');
      },
    },
    logger: createLogger({ name: 'test', level, destination }),
  });
  servers.push(server);
  return { server, lines };
}

describe('startOpsServer', () => {
  it('logs what goes wrong, but not each probe', async () => {
    const { server, lines } = await failingOpsServer('info');
    expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${server.port}/readyz`)).status).toBe(500);
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({ level: 'error', module: 'ops' });
  });

  it('keeps a LOG_LEVEL stricter than warn', async () => {
    const { server, lines } = await failingOpsServer('silent');
    expect((await fetch(`http://127.0.0.1:${server.port}/readyz`)).status).toBe(500);
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toEqual([]);
  });
});
