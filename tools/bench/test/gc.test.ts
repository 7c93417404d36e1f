import { describe, expect, it } from 'vitest';
import { gcFigures } from '../src/load.js';
import { parsePrometheus } from '../src/prometheus.js';
import { gcSummary } from '../src/report.js';

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
});
