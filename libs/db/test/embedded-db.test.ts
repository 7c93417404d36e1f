import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, linkSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { createEmbeddedDb, removeStaleLock } from '../src/embedded-db.js';

const HOLDER = fileURLToPath(new URL('./fixtures/hold-embedded-db.mjs', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'switchboard-pglite-'));
const dataDir = join(root, 'postgres');
const lockFile = `${dataDir}.lock`;

function readBootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}
const bootId = readBootId();

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('createEmbeddedDb', () => {
  it('refuses a directory another process has open, and takes it over once that process is gone', async () => {
    const holder = spawn(process.execPath, [HOLDER], { env: { ...process.env, DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const [chunk] = (await once(holder.stdout, 'data')) as [Buffer];
      expect(String(chunk)).toContain('open');
      await expect(createEmbeddedDb({ dataDir })).rejects.toThrow(`in use by process ${holder.pid}`);
    } finally {
      holder.kill('SIGKILL');
      await once(holder, 'exit');
    }

    // Killed, it left its lock behind; nobody holds it any more.
    const database = await createEmbeddedDb({ dataDir });
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(database.db);
    expect(rows).toEqual([{ one: 1 }]);
    await database.destroy();
    expect(existsSync(lockFile)).toBe(false);
  });

  it('refuses a lock of another host, whose process it cannot check, and takes over one of its own earlier life', async () => {
    // A second container on the same volume: its pid may be ours, its host name is not.
    writeFileSync(lockFile, `${process.pid}@another-container`);
    await expect(createEmbeddedDb({ dataDir })).rejects.toThrow(`in use by process ${process.pid}@another-container`);

    // A container restarted: the same pid and host name, and the process that wrote it is gone.
    writeFileSync(lockFile, `${process.pid}@${hostname()}`);
    const database = await createEmbeddedDb({ dataDir });
    await database.destroy();
    expect(existsSync(lockFile)).toBe(false);
  });

  it.runIf(bootId)('takes over a lock from before a reboot, even when its pid now belongs to a running process', async () => {
    // After a reboot the pid is likely someone else's: here, a process unrelated to the database.
    const unrelated = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      writeFileSync(lockFile, `${unrelated.pid}@${hostname()}@another-boot`);
      const database = await createEmbeddedDb({ dataDir });
      await database.destroy();
      expect(existsSync(lockFile)).toBe(false);

      // A container recreated after a reboot has a host name of its own as well.
      writeFileSync(lockFile, `${unrelated.pid}@an-earlier-container@another-boot`);
      const again = await createEmbeddedDb({ dataDir });
      await again.destroy();
      expect(existsSync(lockFile)).toBe(false);
    } finally {
      unrelated.kill();
      await once(unrelated, 'exit');
    }
  });

  it.runIf(bootId)('still refuses a lock of another host of this boot: a second container on the same kernel', async () => {
    writeFileSync(lockFile, `${process.pid}@another-container@${bootId}`);
    await expect(createEmbeddedDb({ dataDir })).rejects.toThrow(`in use by process ${process.pid}@another-container`);
    rmSync(lockFile);
  });
});

describe('removeStaleLock', () => {
  it('removes the lock judged stale, but not one another process has taken since', () => {
    const file = join(root, 'race.lock');
    writeFileSync(file, '999999@gone');
    const judged = { text: '999999@gone', ino: statSync(file, { bigint: true }).ino };

    // Meanwhile another process, which judged it stale too, took over: its lock was written
    // aside before the old one went, as lockDataDir does, and linked in its place.
    writeFileSync(`${file}.other`, `${process.pid}@${hostname()}`);
    rmSync(file);
    linkSync(`${file}.other`, file);
    rmSync(`${file}.other`);
    removeStaleLock(file, judged);
    expect(readFileSync(file, 'utf8')).toBe(`${process.pid}@${hostname()}`);

    removeStaleLock(file, { text: `${process.pid}@${hostname()}`, ino: statSync(file, { bigint: true }).ino });
    expect(existsSync(file)).toBe(false);
  });
});
