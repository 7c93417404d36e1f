import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { createEmbeddedDb } from '../src/embedded-db.js';

const HOLDER = fileURLToPath(new URL('./fixtures/hold-embedded-db.mjs', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'switchboard-pglite-'));
const dataDir = join(root, 'postgres');

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
    expect(existsSync(`${dataDir}.lock`)).toBe(false);
  });

  it('refuses a lock of another host, whose process it cannot check, and takes over one of its own earlier life', async () => {
    // A second container on the same volume: its pid may be ours, its host name is not.
    writeFileSync(`${dataDir}.lock`, `${process.pid}@another-container`);
    await expect(createEmbeddedDb({ dataDir })).rejects.toThrow(`in use by process ${process.pid}@another-container`);

    // A container restarted: the same pid and host name, and the process that wrote it is gone.
    writeFileSync(`${dataDir}.lock`, `${process.pid}@${hostname()}`);
    const database = await createEmbeddedDb({ dataDir });
    await database.destroy();
    expect(existsSync(`${dataDir}.lock`)).toBe(false);
  });
});
