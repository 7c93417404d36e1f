import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { PGlite, types } from '@electric-sql/pglite';
import { Kysely } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import type { Database } from './create-db.js';

/** Whether a process with this pid runs here (one of another user counts). */
function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** This boot of the machine, which a container shares with its host; undefined where it cannot be read (not Linux). */
function readBootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** A lock file as read, with the identity of the file: a takeover must remove that file and no later one. */
export interface LockRead {
  text: string;
  ino: bigint;
}

function readLock(file: string): LockRead | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return { text: readFileSync(fd, 'utf8'), ino: fstatSync(fd, { bigint: true }).ino };
  } finally {
    closeSync(fd);
  }
}

/** Who holds a lock that says `<pid>@<host>` or `<pid>@<host>@<boot id>`, as an error message names it. */
function holderName(text: string): string {
  const [pid, host] = text.split('@');
  return `${pid}@${host}`;
}

/** Whether the process that wrote the lock `text` is surely gone. */
function isStale(text: string, bootId: string | undefined): boolean {
  const [pid, host, boot] = text.split('@');
  const holderPid = Number(pid);
  // Written before a reboot: its process is gone, whatever runs under its pid now and whatever
  // host name a container recreated since has.
  if (boot && bootId && boot !== bootId) return true;
  // Another host's process cannot be checked: a second container on the same volume.
  if (host !== hostname()) return false;
  // Our own pid and host: a restarted container's earlier life (its main process is pid 1 each
  // time), since the process that is alive under this pid is this one.
  if (holderPid === process.pid) return true;
  return !isRunning(holderPid);
}

/**
 * Removes the lock if it is still `stale`, the one judged so. Two processes that judge one stale
 * lock at once would, removing it by name, each remove what is there: the later removal takes
 * away the lock the first has made meanwhile, and both believe they hold it. So it is moved aside
 * first, and if what was moved is not the stale lock it is put back. Should a third process take
 * the name in the moment it is away, that one keeps it and the displaced one still believes it
 * holds the lock: that takes three starts at once on a stale lock. Exported for its test: the
 * moment between judging and removing is too short to meet with real processes.
 */
export function removeStaleLock(lockFile: string, stale: LockRead): void {
  const aside = `${lockFile}.stale.${process.pid}.${randomBytes(4).toString('hex')}`;
  try {
    renameSync(lockFile, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // removed meanwhile
    throw error;
  }
  try {
    const moved = readLock(aside);
    if (moved !== undefined && (moved.ino !== stale.ino || moved.text !== stale.text))
      try {
        linkSync(aside, lockFile);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
  } finally {
    rmSync(aside, { force: true });
  }
}

/**
 * Takes `<dataDir>.lock` for this process, and returns its release. PGlite takes no lock of its
 * own, and two processes on one directory (a second `npm start`) each keep their own copy of the
 * database in memory and write it back, so one loses the other's writes. The lock says
 * `<pid>@<host>@<boot id>` (without the boot id where it cannot be read), and is made whole in one
 * step (written aside, then linked), so nobody reads it half-written.
 *
 * A lock is taken over when its process is surely gone: written in another boot (the pid may
 * belong to an unrelated process by now, and a container recreated since has another host name),
 * or on this host by a process that is not running (killed, or a container's earlier life under
 * the same pid and host name). One of another host in this boot (a second container on the same
 * volume) cannot be checked, and is refused. A lock from another boot is taken even if it came
 * from another machine: two machines sharing this directory over network storage are not told
 * apart from one machine rebooted. The lock lies beside the directory, not in it: PostgreSQL's
 * initdb wants an empty one.
 */
function lockDataDir(dataDir: string): () => void {
  const lockFile = `${dataDir}.lock`;
  const bootId = readBootId();
  const mine = `${process.pid}@${hostname()}${bootId ? `@${bootId}` : ''}`;
  const pending = `${lockFile}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(pending, mine);
  try {
    const ours = statSync(pending, { bigint: true }).ino;
    for (;;) {
      try {
        linkSync(pending, lockFile);
        // Only while it is ours: one deleted by hand and taken by another since is that one's.
        return () => {
          if (readLock(lockFile)?.ino === ours) rmSync(lockFile, { force: true });
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = readLock(lockFile);
      if (holder === undefined) continue; // released meanwhile
      if (!isStale(holder.text, bootId))
        throw new Error(
          `the embedded database in ${dataDir} is in use by process ${holderName(holder.text)}; stop that one first (or delete ${lockFile} if it is gone)`,
        );
      removeStaleLock(lockFile, holder);
    }
  } finally {
    rmSync(pending, { force: true });
  }
}

/**
 * PostgreSQL compiled to WebAssembly (PGlite), stored in `dataDir`: the all-in-one mode's
 * database, so that the same migrations and queries run without a PostgreSQL server. One
 * connection, so queries and transactions take turns. One process at a time per directory.
 */
export async function createEmbeddedDb<DB>({ dataDir }: { dataDir: string }): Promise<Database<DB>> {
  mkdirSync(dataDir, { recursive: true });
  const unlock = lockDataDir(dataDir);
  let client: PGlite;
  try {
    // Ids are bigint columns but numbers in JSON, as with the pg driver (see create-db.ts).
    client = await PGlite.create(dataDir, { parsers: { [types.INT8]: (value: string) => Number(value) } });
  } catch (error) {
    unlock();
    throw error;
  }
  const db = new Kysely<DB>({ dialect: new PGliteDialect(client) });
  return {
    db,
    isHealthy: () => !client.closed,
    destroy: () => db.destroy().finally(unlock),
  };
}
