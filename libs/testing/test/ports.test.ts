import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, startProcess } from '../src/index.js';

const ephemeralStart = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);

describe('freePort', () => {
  it('gives ports below the ephemeral range that can be listened on', async () => {
    for (let i = 0; i < 20; i++) {
      const port = await freePort();
      expect(port).toBeGreaterThanOrEqual(20_000);
      // Where the ephemeral range starts this low, ports come from just above 20000 instead.
      expect(port).toBeLessThan(Math.max(ephemeralStart, 21_001));
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject).listen(port, '127.0.0.1', resolve);
      });
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('startProcess', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('starts again on fresh ports when the ports it chose were taken', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-ports-'));
    const marker = join(dir, 'first-port');
    const entry = 'libs/testing/test/fixtures/flaky-listener.mjs';
    const service = await startProcess('flaky', entry, { env: { MARKER_FILE: marker } });
    try {
      expect(Number(readFileSync(marker, 'utf8'))).not.toBe(service.port);
      expect((await fetch(service.opsUrl('/readyz'))).status).toBe(200);
    } finally {
      await service.stop();
    }
  });

  it('does not retry when the caller fixed the ports', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-ports-'));
    const entry = 'libs/testing/test/fixtures/flaky-listener.mjs';
    const env = { MARKER_FILE: join(dir, 'first-port'), PORT: String(await freePort()), OPS_PORT: String(await freePort()) };
    await expect(startProcess('flaky', entry, { env })).rejects.toThrow(/exited before it was ready/);
  });
});
