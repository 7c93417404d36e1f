import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { LatencySummary } from '../src/histogram.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const run = promisify(execFile);

interface Phase {
  system: string;
  sent: number;
  acked: number;
  delivered: number;
  deliveriesExpected: number;
  errors: number;
  lost: { acks: number; deliveries: number };
  duplicates: number;
  outOfOrder: number;
  seqGaps: number;
  seqRegressions: number;
  throughput: { sendsPerSec: number; acksPerSec: number; deliveriesPerSec: number };
  latency: { ack: LatencySummary; delivery: LatencySummary };
  generator: { cpuMean: number; lagP99Max: number; warnings: string[] };
  machine: { busy: number | undefined; waitPerRunSecond: Record<string, number> };
}

describe('npm run bench -- --quick', () => {
  const out = mkdtempSync(join(tmpdir(), 'bench-smoke-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('runs a tiny steady load against the real system and reports it with nothing lost', { timeout: 180_000 }, async () => {
    const { stdout } = await run(process.execPath, ['tools/bench/dist/main.js', '--quick', '--json-only', '--out', out], {
      cwd: REPO_ROOT,
      timeout: 170_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    const result = JSON.parse(stdout) as {
      clean: boolean;
      machine: { cpus: number; loadAverageAtStart: number[] };
      scenarios: { quick?: { runs: Phase[]; params: { connectionsPlanned: number; sessions: number } } };
      errors: Record<string, string>;
    };
    expect(result.errors).toEqual({});
    expect(result.machine.cpus).toBeGreaterThan(0);
    expect(result.machine.loadAverageAtStart).toHaveLength(3);
    const quick = result.scenarios.quick;
    expect(quick?.params).toMatchObject({ connectionsPlanned: 20, sessions: 10 });
    const phase = quick?.runs.find((candidate) => candidate.system === 'switchboard');
    expect(phase).toBeDefined();
    if (!phase) return;
    expect(phase.sent).toBeGreaterThan(0);
    expect(phase.acked).toBe(phase.sent);
    expect(phase.delivered).toBe(phase.deliveriesExpected);
    expect(phase.deliveriesExpected).toBe(phase.sent * 2);
    expect(phase).toMatchObject({
      errors: 0,
      lost: { acks: 0, deliveries: 0 },
      duplicates: 0,
      outOfOrder: 0,
      seqGaps: 0,
      seqRegressions: 0,
    });
    for (const summary of [phase.latency.ack, phase.latency.delivery]) {
      expect(summary.count).toBeGreaterThan(0);
      for (const key of ['p50', 'p90', 'p99', 'p999', 'max'] as const) expect(typeof summary[key]).toBe('number');
    }
    expect(phase.throughput.deliveriesPerSec).toBeGreaterThan(0);
    // Counted over the window (quick mode asks for 50/s).
    expect(phase.throughput.sendsPerSec).toBeGreaterThan(0);
    expect(phase.throughput.sendsPerSec).toBeLessThan(100);
    expect(typeof phase.generator.cpuMean).toBe('number');
    // How busy the cores were, and how long each process waited for one (Linux /proc).
    expect(phase.machine.busy).toBeGreaterThan(0);
    expect(phase.machine.busy).toBeLessThanOrEqual(1);
    for (const name of ['gateway-0', 'gateway-1', 'persistence', 'nats', 'generator'])
      expect(phase.machine.waitPerRunSecond[name]).toBeGreaterThanOrEqual(0);
    expect(result.clean).toBe(true);
    // The JSON is also written to the output directory.
    expect(readdirSync(out).filter((name) => name.endsWith('.json'))).toHaveLength(1);
  });
});
