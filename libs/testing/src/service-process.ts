import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.js';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export type ServiceName = 'auth' | 'persistence' | 'gateway';

export interface ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly port: number;
  readonly opsPort: number;
  /** Every stdout and stderr line so far. */
  readonly logs: string[];
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** Sends SIGTERM and waits for the exit; SIGKILL after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<number | string>;
  /** `kill -9`. */
  kill(): Promise<number | string>;
  ready(timeoutMs?: number): Promise<void>;
  url(path?: string): string;
  opsUrl(path?: string): string;
}

export interface StartServiceOptions {
  env?: Record<string, string | undefined>;
  /** Wait for `/readyz` to answer 200 before resolving (default true). */
  waitReady?: boolean;
  readyTimeoutMs?: number;
}

/** A NATS subject prefix of its own for a test file, so parallel files on one NATS never meet. */
export function uniqueSubjectPrefix(): string {
  return `t${randomBytes(5).toString('hex')}`;
}

/** The HTTP status of a GET of `url`, or 0 when nothing answers (a port not open yet, or closed). */
export function httpStatus(url: string): Promise<number> {
  return fetch(url).then(
    (response) => response.status,
    () => 0,
  );
}

export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Starts `node services/<name>/dist/main.js` exactly as in production, on free ports. */
export function startService(name: ServiceName, options: StartServiceOptions = {}): Promise<ServiceProcess> {
  return startProcess(name, `services/${name}/dist/main.js`, options);
}

/**
 * Starts `node <entry>` (relative to the repository) with `PORT` and `OPS_PORT` on free ports unless given.
 * A port found free can still be taken before the child listens on it; when the child then fails
 * with EADDRINUSE on ports chosen here, it is started again on fresh ones.
 */
export async function startProcess(name: string, entry: string, options: StartServiceOptions = {}): Promise<ServiceProcess> {
  const choosesPorts = options.env?.PORT === undefined || options.env?.OPS_PORT === undefined;
  for (let attempt = 1; ; attempt++) {
    const port = Number(options.env?.PORT ?? (await freePort()));
    const opsPort = Number(options.env?.OPS_PORT ?? (await freePort()));
    const service = launch(name, entry, options, port, opsPort);
    if (options.waitReady === false) return service;
    try {
      await service.ready(options.readyTimeoutMs);
      return service;
    } catch (error) {
      // A child not ready in time is still running: it would hold its ports and its connections
      // into the tests that follow, as the caller never got it to stop.
      await service.kill();
      const portTaken = service.logs.some((line) => line.includes('EADDRINUSE'));
      if (!(choosesPorts && portTaken && attempt < 3)) throw error;
    }
  }
}

function launch(name: string, entry: string, options: StartServiceOptions, port: number, opsPort: number): ServiceProcess {
  const child = spawn(process.execPath, [entry], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH, LOG_LEVEL: 'info', HOST: '127.0.0.1', ...options.env, PORT: String(port), OPS_PORT: String(opsPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    let partial = '';
    stream?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      logs.push(...lines);
    });
  }
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
  });

  const service: ServiceProcess = {
    name,
    child,
    port,
    opsPort,
    logs,
    exited,
    url: (path = '/') => `http://127.0.0.1:${port}${path}`,
    opsUrl: (path = '/') => `http://127.0.0.1:${opsPort}${path}`,
    async ready(timeoutMs = 20_000) {
      await waitFor(
        async () => {
          if (hasExited) throw new Error(`${name} exited before it was ready:\n${logs.join('\n')}`);
          try {
            // Ready, and ours: another test's service that took the port after it was found free
            // answers too, while this one fails with EADDRINUSE and exits.
            return (await fetch(service.opsUrl('/readyz'))).status === 200 && listensOn(child.pid, opsPort);
          } catch {
            return false;
          }
        },
        timeoutMs,
        `${name} to be ready`,
      );
    },
    async stop(timeoutMs = 35_000) {
      if (hasExited) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
    async kill() {
      if (!hasExited) child.kill('SIGKILL');
      return exited;
    },
  };
  return service;
}

/**
 * Whether process `pid` holds a TCP socket listening on `port`, read from /proc (Linux). Where
 * /proc cannot tell, it is taken to.
 */
function listensOn(pid: number | undefined, port: number): boolean {
  if (pid === undefined) return false;
  try {
    const sockets = new Set<string>();
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const inode = /^socket:\[(\d+)\]$/.exec(safeReadlink(`/proc/${pid}/fd/${fd}`))?.[1];
      if (inode) sockets.add(inode);
    }
    const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
        // sl local_address rem_address st … inode: a listening socket has state 0A.
        const [, local = '', , state, , , , , , inode = ''] = line.trim().split(/\s+/);
        if (state === '0A' && local.endsWith(hexPort) && sockets.has(inode)) return true;
      }
    }
    return false;
  } catch {
    return true;
  }
}

function safeReadlink(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}
