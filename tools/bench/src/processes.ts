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
    log(`\n${signal}: stopping every process the bench started (again to kill them at once)…`);
    // Longer than a service's own stop bound (35 s, `ServiceProcess.stop`), so that a slow stop
    // still ends with the run's database and stream dropped.
    const hardStop = setTimeout(() => {
      for (const child of children) child.kill('SIGKILL');
      process.exit(130);
    }, 40_000);
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

/** Clock ticks per second in /proc/stat (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** The machine's idle and stolen time, in clock ticks summed over its cores, from /proc/stat. */
export interface MachineTicks {
  /** Idle and waiting for I/O. */
  idle: number;
  /** Given by the hypervisor to another guest while this one was ready to run. */
  steal: number;
  cores: number;
  /** When it was read (performance.now(), ms). */
  at: number;
}

/** Parses /proc/stat: its `cpu` line (`cpu user nice system idle iowait irq softirq steal …`) and one `cpuN` line per core. */
export function parseMachineTicks(stat: string, at: number): MachineTicks | undefined {
  const lines = stat.split('\n');
  const total = lines[0] ?? '';
  if (!total.startsWith('cpu ')) return undefined;
  const [, , , idle = 0, iowait = 0, , , steal = 0] = total.trim().split(/\s+/).slice(1).map(Number);
  const cores = lines.filter((line) => /^cpu\d+ /.test(line)).length;
  return cores > 0 ? { idle: idle + iowait, steal, cores, at } : undefined;
}

export function machineTicks(): MachineTicks | undefined {
  try {
    return parseMachineTicks(readFileSync('/proc/stat', 'utf8'), performance.now());
  } catch {
    return undefined;
  }
}

/**
 * The share of the cores' time between two readings that was not idle, and the share stolen.
 * Measured against the time that passed, not against the ticks /proc/stat counted: with a
 * tickless kernel, idle time is measured exactly but busy time is sampled at each tick, and on a
 * VM under many short wake-ups the sampled ticks fell up to 16% short of the time that passed.
 */
export function busyBetween(start: MachineTicks, end: MachineTicks): { busy: number; steal: number } | undefined {
  const ticks = ((end.at - start.at) / 1000) * USER_HZ * end.cores;
  if (ticks <= 0 || start.cores !== end.cores) return undefined;
  const clamp = (share: number) => Math.min(1, Math.max(0, share));
  return { busy: clamp(1 - (end.idle - start.idle) / ticks), steal: clamp((end.steal - start.steal) / ticks) };
}

/**
 * Seconds a process's threads spent on a CPU and runnable but waiting for one, from the
 * scheduler's statistics (/proc/<pid>/task/<tid>/schedstat: on-CPU ns, run-queue ns, slices).
 * Undefined where the kernel does not keep them.
 */
export function procSchedSeconds(pid: number): { run: number; wait: number } | undefined {
  let run = 0;
  let wait = 0;
  let any = false;
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      try {
        const [onCpu, queued] = readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ').map(Number);
        if (onCpu === undefined || queued === undefined || Number.isNaN(onCpu) || Number.isNaN(queued)) continue;
        run += onCpu / 1e9;
        wait += queued / 1e9;
        any = true;
      } catch {
        // the thread ended meanwhile
      }
    }
  } catch {
    return undefined;
  }
  return any ? { run, wait } : undefined;
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

/** A TCP socket of a process: its local and remote ports and its state (`0A` is LISTEN). */
interface TcpSocket {
  localPort: number;
  remotePort: number;
  state: string;
}

/** The TCP sockets a process holds, from /proc/<pid>/fd and its /proc/<pid>/net/tcp(6). Empty where there is no /proc. */
function tcpSocketsOf(pid: number): TcpSocket[] {
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
  const sockets: TcpSocket[] = [];
  for (const table of [`/proc/${pid}/net/tcp`, `/proc/${pid}/net/tcp6`]) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
    for (const line of text.split('\n').slice(1)) {
      const [, local, remote, state, , , , , , inode] = line.trim().split(/\s+/);
      if (local && remote && state && inode && inodes.has(inode))
        sockets.push({ localPort: portOf(local), remotePort: portOf(remote), state });
    }
  }
  return sockets;
}

/**
 * The local ports of a process's TCP connections to `remotePort` on this machine: how an entry
 * of NATS's `/connz`, which gives each client's port, is matched to the process behind it.
 */
export function localPortsTo(pid: number, remotePort: number): number[] {
  return tcpSocketsOf(pid)
    .filter((socket) => socket.remotePort === remotePort && socket.state !== '0A')
    .map((socket) => socket.localPort);
}

/**
 * The processes named `comm` that listen on TCP `port`: the server the system under test talks
 * to, not every one of that name (a test's private NATS, another Redis), whose CPU is not the
 * system's. All of that name where /proc shows no listener (no access to another user's fds).
 */
export function pidsListeningOn(comm: string, port: number): number[] {
  const named = pidsByName(comm);
  const listening = named.filter((pid) => tcpSocketsOf(pid).some((socket) => socket.state === '0A' && socket.localPort === port));
  return listening.length > 0 ? listening : named;
}
