import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, REPO_ROOT, type ServiceProcess, startProcess, waitFor } from '@switchboard/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { embeddedEnv } from './support.js';

const dataDirs: string[] = [];
const cleanups: (() => Promise<unknown> | undefined)[] = [];

afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
  for (const dataDir of dataDirs.splice(0)) rmSync(dataDir, { recursive: true, force: true });
});

/** A data directory of its own, with `extra` over the defaults. */
async function embeddedEnvWith(extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'switchboard-embedded-signals-'));
  dataDirs.push(dataDir);
  return { ...(await embeddedEnv(dataDir)), ...extra };
}

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

const lockFile = (env: Record<string, string>) => join(env.DATA_DIR ?? '', 'postgres.lock');

describe('npm start', () => {
  it('passes SIGTERM on to the server, which closes its ports and its database', { timeout: 180_000 }, async () => {
    const env = await embeddedEnvWith();
    // Its own process group, so that whatever is left of it (node, when the shell did not pass the
    // signal on) can be killed at the end.
    const npm: ChildProcess = spawn('npm', ['run', 'start'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'info', HOST: '127.0.0.1', ...env },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    for (const stream of [npm.stdout, npm.stderr]) stream?.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk));
    cleanups.push(async () => {
      try {
        if (npm.pid !== undefined) process.kill(-npm.pid, 'SIGKILL');
      } catch {
        // All gone already.
      }
    });

    // `npm start` builds first: that can take a while on a busy machine.
    await waitFor(
      async () => {
        if (npm.exitCode !== null) throw new Error(`npm start exited before it was ready:\n${output.join('')}`);
        try {
          return (await fetch(`http://127.0.0.1:${env.OPS_PORT}/readyz`)).status === 200;
        } catch {
          return false;
        }
      },
      120_000,
      'npm start to be ready',
    );
    expect(existsSync(lockFile(env))).toBe(true);

    // What a process manager does: the signal goes to the process it started, npm, and no further.
    npm.kill('SIGTERM');
    await waitFor(
      async () => (await refusesConnections(Number(env.PORT))) && !existsSync(lockFile(env)),
      45_000,
      'the server to close its port and its database',
    );
  });
});

describe('a signal during start-up', () => {
  it('says where it waits for NATS, and on Ctrl+C closes the database and exits 0', { timeout: 90_000 }, async () => {
    // Nothing listens there: the connection is refused, and the client tries again without end.
    const natsPort = await freePort();
    const env = await embeddedEnvWith({ NATS_URL: `nats://switchboard:nats-secret@127.0.0.1:${natsPort}` });
    const system: ServiceProcess = await startProcess('embedded', 'apps/embedded/dist/main.js', { env, waitReady: false });
    cleanups.push(() => system.kill());

    await waitFor(
      () => system.logs.some((line) => line.includes(`waiting for NATS at nats://127.0.0.1:${natsPort}`)),
      30_000,
      'the process to say it waits for NATS',
    );
    expect(system.logs.join('\n')).not.toContain('nats-secret');
    // The database opens before the bus connects.
    expect(existsSync(lockFile(env))).toBe(true);

    system.child.kill('SIGINT');
    expect(await system.exited).toBe(0);
    expect(existsSync(lockFile(env))).toBe(false);
    // Cut short, not given up on after the grace for starts that cannot be.
    expect(system.logs.join('\n')).not.toContain('start-up had not finished');
  });
});
