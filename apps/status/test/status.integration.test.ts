import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BusError, connectNatsBus, encodeJson, jsonEndpoint } from '@switchboard/bus';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { freePort, natsServerBinary, REPO_ROOT, uniqueSubjectPrefix, waitFor } from '@switchboard/testing';
import { connect, type NatsConnection, type Service } from 'nats';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

/** The machine's `nats-server`, found as every other test finds it (`NATS_SERVER_BIN`, else the usual places), then on the PATH. */
const natsServer = () => natsServerBinary() ?? 'nats-server';

import { z } from 'zod';

/**
 * The built tool, run as `npm run status` runs it, against a nats-server of this file's own: a
 * shared NATS has other tests' services on it, and here which services answer must be chosen.
 */
let server: ChildProcess;
const serverLogs: string[] = [];
let natsUrl: string;
let storeDir: string | undefined;
let nc: NatsConnection;
const services: Service[] = [];

beforeAll(async () => {
  const port = await freePort();
  natsUrl = `nats://127.0.0.1:${port}`;
  // With JetStream, which the services' bus asks for as it connects.
  storeDir = await mkdtemp(join(tmpdir(), 'status-nats-'));
  server = spawn(natsServer(), ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [server.stdout, server.stderr]) stream?.setEncoding('utf8').on('data', (chunk: string) => serverLogs.push(chunk));
  await waitFor(
    async () => {
      if (server.exitCode !== null) throw new Error(`nats-server exited:\n${serverLogs.join('')}`);
      try {
        nc = await connect({ servers: natsUrl, reconnect: false });
        return true;
      } catch {
        return false;
      }
    },
    15_000,
    'nats-server to start',
  );
});

// Each test starts with no service on the server, the state in which NATS itself answers
// `$SRV.STATS` with "no responders".
afterEach(async () => {
  await Promise.all(services.splice(0).map((service) => service.stop()));
});

afterAll(async () => {
  await nc?.close();
  if (server && server.exitCode === null) {
    const exited = once(server, 'exit');
    server.kill('SIGTERM');
    await exited;
  }
  if (storeDir) await rm(storeDir, { recursive: true, force: true });
});

/** Registers a stand-in for one instance of a Switchboard service, named as the real ones are. */
async function register(prefix: string, service: 'auth' | 'gateway' | 'persistence'): Promise<void> {
  services.push(await nc.services.add({ name: `${prefix}-${service}`, version: '0.1.0' }));
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node apps/status/dist/main.js` to its end, whatever it exits with. */
async function status(env: Record<string, string>, args: string[] = []): Promise<Run> {
  const child = spawn(process.execPath, ['apps/status/dist/main.js', ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

describe('npm run status', () => {
  it('reports every service as missing and exits 1 when nothing answers $SRV.STATS, instead of failing on no responders', async () => {
    const run = await status({ NATS_URL: natsUrl, NATS_SUBJECT_PREFIX: uniqueSubjectPrefix() });
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain('No Switchboard service answered.');
    expect(run.stdout).toMatch(/^auth: no instance answered$/m);
    expect(run.stdout).toMatch(/^gateway: no instance answered$/m);
    expect(run.stdout).toMatch(/^persistence: no instance answered$/m);
    expect(run.code).toBe(1);
  });

  it('names the service with no instance answering, in the table and in --json, and exits 1', async () => {
    const prefix = uniqueSubjectPrefix();
    await register(prefix, 'gateway');
    await register(prefix, 'persistence');

    const table = await status({ NATS_URL: natsUrl, NATS_SUBJECT_PREFIX: prefix });
    expect(table.stdout).toMatch(/^gateway\s+\S+\s+0\.1\.0/m);
    expect(table.stdout).toMatch(/^persistence\s+\S+\s+0\.1\.0/m);
    expect(table.stdout).toMatch(/^auth: no instance answered$/m);
    expect(table.stdout).not.toMatch(/^(gateway|persistence): no instance answered$/m);
    expect(table.code).toBe(1);

    const json = await status({ NATS_URL: natsUrl, NATS_SUBJECT_PREFIX: prefix }, ['--json']);
    const entries = JSON.parse(json.stdout) as { service: string; missing?: boolean }[];
    expect(entries.map((entry) => [entry.service, entry.missing ?? false])).toEqual([
      ['auth', true],
      ['gateway', false],
      ['persistence', false],
    ]);
    expect(json.code).toBe(1);
  });

  it('counts the error answers of a service, which nats.js does not, and keeps them out of its figures', async () => {
    const prefix = uniqueSubjectPrefix();
    const subjects = createSubjects(prefix);
    const logger = createLogger({ name: 'status-errors-test', level: 'silent' });
    const bus = await connectNatsBus({ servers: [natsUrl], name: 'status-errors-test', subjects, logger });
    try {
      const persistence = await bus.addService({
        name: subjects.persistenceServiceName,
        version: '0.1.0',
        description: 'a persistence whose database is down',
        stats: async () => ({ pending: 3 }),
        endpoints: [
          jsonEndpoint({
            name: 'sessions-get',
            subject: `${prefix}.sessions.get`,
            requestSchema: z.object({}),
            handler: async () => {
              throw new BusError('unavailable', 'the database is unreachable');
            },
            logger,
          }),
        ],
      });
      await Promise.all((['auth', 'gateway'] as const).map((service) => register(prefix, service)));
      for (let i = 0; i < 2; i++) {
        expect(JSON.parse(new TextDecoder().decode(await bus.request(`${prefix}.sessions.get`, encodeJson({}), 2_000)))).toMatchObject({
          error: { code: 'unavailable' },
        });
      }

      const json = await status({ NATS_URL: natsUrl, NATS_SUBJECT_PREFIX: prefix }, ['--json']);
      const entries = JSON.parse(json.stdout) as { service: string; requests?: number; errors?: number; figures?: object }[];
      // Before, the column read 0 whatever persistence answered: nats.js counts only handlers that throw at once.
      expect(entries.find((entry) => entry.service === 'persistence')).toMatchObject({ requests: 2, errors: 2, figures: { pending: 3 } });
      expect(entries.find((entry) => entry.service === 'persistence')?.figures).not.toHaveProperty('errors');
      await persistence.stop();
    } finally {
      await bus.close();
    }
  });

  it('exits 0 when every service has an instance answering', async () => {
    const prefix = uniqueSubjectPrefix();
    await Promise.all((['auth', 'gateway', 'persistence'] as const).map((service) => register(prefix, service)));

    const run = await status({ NATS_URL: natsUrl, NATS_SUBJECT_PREFIX: prefix });
    expect(run.stdout).not.toContain('no instance answered');
    expect(run.stdout).toMatch(/^auth: 1 instance$/m);
    expect(run.code).toBe(0);
  });

  it.each([
    ['is not JSON', () => 'x', '"x"'],
    ['is JSON null', () => 'null', 'null'],
    // Before, it ended the whole run (exit 4) as its rows were sorted by their instance id.
    ['names a service of the installation without an id or endpoints', (prefix: string) => `{"name":"${prefix}-gateway"}`, '-gateway'],
  ])(
    'skips a $SRV.STATS reply that %s with a warning line, prints the table of the rest and exits by it',
    async (_what, replyOf, quoted) => {
      const prefix = uniqueSubjectPrefix();
      const reply = replyOf(prefix);
      await Promise.all((['auth', 'gateway', 'persistence'] as const).map((service) => register(prefix, service)));
      // A stray responder on the subject every services-framework client asks.
      const stray = nc.subscribe('$SRV.STATS', { callback: (_error, msg) => msg.respond(reply) });
      try {
        await nc.flush();
        const run = await status({ NATS_URL: natsUrl, NATS_SUBJECT_PREFIX: prefix });
        for (const service of ['auth', 'gateway', 'persistence'])
          expect(run.stdout).toMatch(new RegExp(`^${service}\\s+\\S+\\s+0\\.1\\.0`, 'm'));
        expect(run.stdout).not.toContain('no instance answered');
        expect(run.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^switchboard-status: warning: /)]);
        expect(run.stderr).toContain(quoted);
        expect(run.code).toBe(0);
      } finally {
        stray.unsubscribe();
      }
    },
  );

  it('prints the configuration error without a stack trace, and exits 3, for a bad setting', async () => {
    const run = await status({ NATS_URL: natsUrl, STATUS_TIMEOUT_MS: '50' });
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^switchboard-status: invalid configuration:\n {2}STATUS_TIMEOUT_MS: .*\(got "50"\)\n$/);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(run.code).toBe(3);
  });

  it('exits 3, not 2, for a NATS password with a "%" that is not percent-encoded', async () => {
    // Before, the URL passed, and the connection failed with `URI malformed`: NATS unreachable, exit 2.
    const run = await status({ NATS_URL: 'nats://status:50%off@127.0.0.1:4222' });
    expect(run.stderr).toMatch(/NATS_URL: .*write "%" as %25/);
    expect(run.stderr).not.toContain('50%off');
    expect(run.code).toBe(3);
  });

  it('exits 2, not 1, when the connection to NATS is lost while the services answer', async () => {
    // A server of this test's own, to be killed while the tool waits for answers on it.
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}`;
    const doomed = spawn(natsServer(), ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    try {
      let watcher: NatsConnection | undefined;
      await waitFor(
        async () => {
          watcher = await connect({ servers: url, reconnect: false }).catch(() => undefined);
          return watcher !== undefined;
        },
        15_000,
        'the second nats-server to start',
      );
      const connected = watcher;
      if (!connected) throw new Error('no connection to the second nats-server');
      const asked = new Promise<void>((resolve) => connected.subscribe('$SRV.STATS', { callback: () => resolve() }));
      await connected.flush();
      const running = status({ NATS_URL: url, NATS_SUBJECT_PREFIX: uniqueSubjectPrefix(), STATUS_TIMEOUT_MS: '10000' });
      await asked;
      doomed.kill('SIGKILL');
      const run = await running;
      // Before, it waited out its 10 s and reported every service missing (exit 1).
      expect(run.stdout).not.toContain('no instance answered');
      expect(run.stderr.trimEnd().split('\n')).toEqual([expect.stringContaining(`lost the connection to NATS at ${url}`)]);
      expect(run.code).toBe(2);
    } finally {
      if (doomed.exitCode === null && doomed.signalCode === null) doomed.kill('SIGKILL');
    }
  });

  it('prints one line naming the URL and the cause, and exits 2, when NATS cannot be reached', async () => {
    // Nothing listens there: freePort found it free, and nothing here opens it.
    const closed = `nats://127.0.0.1:${await freePort()}`;
    const run = await status({ NATS_URL: closed });
    expect(run.stdout).toBe('');
    expect(run.stderr.trimEnd().split('\n')).toEqual([expect.stringContaining(closed)]);
    expect(run.stderr).toContain('ECONNREFUSED');
    expect(run.code).toBe(2);
  });
});

describe('the status script', () => {
  it('builds before it runs, so that it works on a fresh clone, and execs node, so that signals reach it', () => {
    const { scripts } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const steps = (scripts.status ?? '').split('&&').map((step) => step.trim());
    expect(steps[0]).toMatch(/^npm run build\b/);
    expect(steps.at(-1)).toBe('exec node apps/status/dist/main.js');
  });
});
