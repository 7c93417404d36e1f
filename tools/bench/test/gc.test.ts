import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { startOpsPort } from '../src/baselines/ops.js';
import { gcFigures } from '../src/load.js';
import { metric, parsePrometheus } from '../src/prometheus.js';
import { gcSummary } from '../src/report.js';
import { type IdleReading, idleReadingTimes, lastFullCollectionMs } from '../src/scenarios.js';

/** prom-client's `nodejs_gc_duration_seconds` as a service exposes it, with its `service` label. */
function gcMetrics(kinds: Record<string, { buckets: number[]; sum: number }>): string {
  const bounds = ['0.001', '0.01', '0.1', '1', '2', '5', '+Inf'];
  const lines = ['# TYPE nodejs_gc_duration_seconds histogram'];
  for (const [kind, { buckets, sum }] of Object.entries(kinds)) {
    for (const [index, le] of bounds.entries())
      lines.push(`nodejs_gc_duration_seconds_bucket{le="${le}",kind="${kind}",service="gateway"} ${buckets[index] ?? buckets.at(-1)}`);
    lines.push(`nodejs_gc_duration_seconds_sum{kind="${kind}",service="gateway"} ${sum}`);
    lines.push(`nodejs_gc_duration_seconds_count{kind="${kind}",service="gateway"} ${buckets.at(-1)}`);
  }
  return lines.join('\n');
}

describe('garbage collection in the window', () => {
  it('counts each kind of pause between two scrapes, with their time and those over 10 ms', () => {
    const before = new Map([
      [
        'gateway-0',
        parsePrometheus(
          gcMetrics({
            minor: { buckets: [2, 10], sum: 0.04 },
            major: { buckets: [0, 1], sum: 0.005 },
            incremental: { buckets: [4, 4], sum: 0.002 },
          }),
        ),
      ],
    ]);
    const after = new Map([
      // 6 more scavenges taking 36 ms in all, 1 of them over 10 ms; 2 more mark-compacts, both over 10 ms.
      // 3 incremental marking steps of 1 ms each.
      [
        'gateway-0',
        parsePrometheus(
          gcMetrics({
            minor: { buckets: [2, 15, 16], sum: 0.076 },
            major: { buckets: [0, 1, 3], sum: 0.035 },
            incremental: { buckets: [4, 7], sum: 0.005 },
          }),
        ),
      ],
      // A process without a scrape at the start, and one without GC metrics, are left out.
      ['gateway-1', parsePrometheus(gcMetrics({ minor: { buckets: [1, 1], sum: 0.001 } }))],
      ['ws', parsePrometheus('process_cpu_seconds_total 3')],
    ]);
    before.set('ws', parsePrometheus('process_cpu_seconds_total 1'));

    const gc = gcFigures(before, after);

    expect(gc).toEqual({
      'gateway-0': {
        minor: { count: 6, totalMs: 36, meanMs: 6, over10Ms: 1 },
        major: { count: 2, totalMs: 30, meanMs: 15, over10Ms: 2 },
        incremental: { count: 3, totalMs: 3, meanMs: 1, over10Ms: 0 },
      },
    });
    expect(gcSummary(gc)).toBe(
      'gateway-0 6 scavenges (mean 6.0 ms, 1 over 10 ms), 2 mark-compacts (mean 15.0 ms, 2 over 10 ms) and 3 incremental marking steps (mean 1.0 ms, 0 over 10 ms)',
    );
    expect(gcSummary({})).toBeUndefined();
  });

  it("reads a baseline server's collections from its ops port as it reads a service's", async () => {
    const server = startOpsPort(0, '127.0.0.1');
    try {
      await once(server, 'listening');
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
      const scrapeOps = async () => parsePrometheus(await (await fetch(url)).text());
      const before = await scrapeOps();
      // Two full collections on demand (the test's own process), and scavenges from short-lived garbage.
      setFlagsFromString('--expose-gc');
      const collect = runInNewContext('gc') as () => void;
      collect();
      collect();
      let kept = 0;
      for (let index = 0; index < 200_000; index++) kept += new Array(64).fill(index).length;
      expect(kept).toBe(200_000 * 64);
      await sleep(100); // the observer hears of collections after they end
      const after = await scrapeOps();

      const figures = gcFigures(new Map([['ws', before]]), new Map([['ws', after]])).ws;
      expect(figures?.major.count).toBeGreaterThanOrEqual(2);
      expect(figures?.minor.count).toBeGreaterThan(0);
      expect(figures?.major.totalMs).toBeGreaterThan(0);
      // A histogram: every pause is in the +Inf bucket, and no bucket holds more than a wider one.
      for (const kind of ['major', 'minor']) {
        const bucket = (le: string) => metric(after, 'nodejs_gc_duration_seconds_bucket', { kind, le });
        expect(bucket('+Inf')).toBe(metric(after, 'nodejs_gc_duration_seconds_count', { kind }));
        expect(bucket('0.001')).toBeLessThanOrEqual(bucket('0.01'));
        expect(bucket('0.01')).toBeLessThanOrEqual(bucket('5'));
        expect(bucket('5')).toBeLessThanOrEqual(bucket('+Inf'));
      }
    } finally {
      server.close();
    }
  });
});

describe('full collections while connections idle', () => {
  const readings = (counts: (number | undefined)[]): IdleReading[] =>
    counts.map((fullCollections, index) => ({
      idleMs: (index + 1) * 15_000,
      bytesPerConnection: 0,
      heapBytesPerConnection: 0,
      fullCollections,
    }));

  it('finds the reading by which the last one had happened', () => {
    expect(lastFullCollectionMs(readings([0, 1, 1, 3, 3]))).toBe(60_000);
    expect(lastFullCollectionMs(readings([1, 1, 1]))).toBe(15_000);
    expect(lastFullCollectionMs(readings([0, 0, 0]))).toBeUndefined();
    // A reading that did not tell (a process had reported no collection of any kind yet) is passed over.
    expect(lastFullCollectionMs(readings([0, undefined, 2]))).toBe(45_000);
    expect(lastFullCollectionMs(readings([undefined, undefined]))).toBeUndefined();
  });

  it("reads at 5 s, every 15 s, at 60 s, and last at 135 s, past V8's 100 s watchdog after a collection at the burst's end", () => {
    expect(idleReadingTimes()).toEqual([20_000, 35_000, 50_000, 60_000, 65_000, 80_000, 95_000, 110_000, 125_000, 135_000]);
  });
});
