import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { PGlite, types } from '@electric-sql/pglite';
import { Kysely } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import type { Database } from './create-db.js';

/** Whether a process with this pid runs (one of another user counts). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `<dataDir>.lock` for this process, and returns its release. PGlite takes no lock of its
 * own, and two processes on one directory (a second `npm start`) each keep their own copy of the
 * database in memory and write it back, so one loses the other's writes. A lock whose process is
 * gone (killed, or a container's pid 1 before a restart) is taken over. It lies beside the
 * directory, not in it: PostgreSQL's initdb wants an empty one.
 */
function lockDataDir(dataDir: string): () => void {
  const lockFile = `${dataDir}.lock`;
  for (;;) {
    try {
      writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      return () => rmSync(lockFile, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number.parseInt(readFileSync(lockFile, 'utf8'), 10);
    if (holder !== process.pid && isRunning(holder))
      throw new Error(`the embedded database in ${dataDir} is in use by process ${holder}; stop that one first`);
    rmSync(lockFile, { force: true });
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
