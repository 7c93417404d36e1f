import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

const readLock = (lockFile: string): string | undefined => {
  try {
    return readFileSync(lockFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
};

/**
 * Takes `<dataDir>.lock` for this process, and returns its release. PGlite takes no lock of its
 * own, and two processes on one directory (a second `npm start`) each keep their own copy of the
 * database in memory and write it back, so one loses the other's writes. The lock says
 * `<pid>@<host>`, and is made whole in one step (written aside, then linked), so nobody reads it
 * half-written. A lock of this host whose process is gone (killed, or a container's earlier life
 * under the same pid and host name) is taken over; one of another host (a second container on the
 * same volume) cannot be checked, and is refused. It lies beside the directory, not in it:
 * PostgreSQL's initdb wants an empty one.
 */
function lockDataDir(dataDir: string): () => void {
  const lockFile = `${dataDir}.lock`;
  const mine = `${process.pid}@${hostname()}`;
  const pending = `${lockFile}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(pending, mine);
  try {
    for (;;) {
      try {
        linkSync(pending, lockFile);
        return () => rmSync(lockFile, { force: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = readLock(lockFile);
      if (holder === undefined) continue; // released meanwhile
      const [pid, host] = holder.split('@');
      const holderPid = Number(pid);
      const sameLife = holderPid === process.pid && host === hostname();
      if (!sameLife && (host !== hostname() || isRunning(holderPid)))
        throw new Error(
          `the embedded database in ${dataDir} is in use by process ${holder}; stop that one first (or delete ${lockFile} if it is gone)`,
        );
      rmSync(lockFile, { force: true });
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
