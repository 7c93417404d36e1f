import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * Every child process and cleanup the bench started, so that they all end with it: on a normal
 * end, on SIGINT/SIGTERM, and (children only, with SIGKILL) on an unexpected exit.
 */
const children = new Set<ChildProcess>();
const cleanups = new Set<() => Promise<void>>();
let exiting = false;

export function trackChild(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Registers a cleanup; returns a function that runs it (once) and unregisters it. */
export function onCleanup(cleanup: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  const run = () => {
    cleanups.delete(run);
    done ??= cleanup();
    return done;
  };
  cleanups.add(run);
  return run;
}

export async function cleanupAll(): Promise<void> {
  await Promise.allSettled([...cleanups].map((cleanup) => cleanup()));
  for (const child of children) child.kill('SIGKILL');
}

export function installSignalHandlers(log: (line: string) => void): void {
  const onSignal = (signal: NodeJS.Signals) => {
    if (exiting) {
      for (const child of children) child.kill('SIGKILL');
      process.exit(130);
    }
    exiting = true;
    log(`\n${signal}: stopping every process the bench started…`);
    const hardStop = setTimeout(() => {
      for (const child of children) child.kill('SIGKILL');
      process.exit(130);
    }, 15_000);
    hardStop.unref();
    void cleanupAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => {
    for (const child of children) child.kill('SIGKILL');
  });
}

const CLOCK_TICKS = 100;

/** CPU seconds (user + system) of a process, from /proc; undefined where there is no /proc or no such process. */
export function procCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command may contain spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return (utime + stime) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** Resident memory of a process in bytes, from /proc. */
export function procRssBytes(pid: number): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match?.[1] ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Pids of the processes whose command name is `comm` (e.g. `nats-server`, `redis-server`). */
export function pidsByName(comm: string): number[] {
  try {
    return readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm;
        } catch {
          return false;
        }
      })
      .map(Number);
  } catch {
    return [];
  }
}

export function sumCpu(pids: readonly number[]): number | undefined {
  let total = 0;
  let any = false;
  for (const pid of pids) {
    const cpu = procCpuSeconds(pid);
    if (cpu !== undefined) {
      total += cpu;
      any = true;
    }
  }
  return any ? total : undefined;
}

/** Read and write system calls a process has made, from /proc/<pid>/io. */
export function procSyscalls(pid: number): { reads: number; writes: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/io`, 'utf8');
    const reads = /syscr:\s+(\d+)/.exec(text)?.[1];
    const writes = /syscw:\s+(\d+)/.exec(text)?.[1];
    return reads && writes ? { reads: Number(reads), writes: Number(writes) } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The local ports of a process's TCP connections to `remotePort` on this machine, from
 * /proc/<pid>/fd and the process's own /proc/<pid>/net/tcp(6): how an entry of NATS's `/connz`,
 * which gives each client's port, is matched to the process behind it. Empty where there is no
 * /proc.
 */
export function localPortsTo(pid: number, remotePort: number): number[] {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        if (inode) inodes.add(inode);
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    return [];
  }
  const portOf = (address: string) => Number.parseInt(address.slice(address.lastIndexOf(':') + 1), 16);
  const ports: number[] = [];
  for (const table of [`/proc/${pid}/net/tcp`, `/proc/${pid}/net/tcp6`]) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
    for (const line of text.split('\n').slice(1)) {
      const [, local, remote, , , , , , , inode] = line.trim().split(/\s+/);
      if (local && remote && inode && inodes.has(inode) && portOf(remote) === remotePort) ports.push(portOf(local));
    }
  }
  return ports;
}
