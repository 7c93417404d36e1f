import { describe, expect, it } from 'vitest';
import { newHistogram, recordMs, summarize } from '../src/histogram.js';
import { histogramDelta, parsePrometheus } from '../src/prometheus.js';

/** Within HdrHistogram's 3 significant digits, and a rounding to the µs. */
const near = (actual: number, expected: number) => expect(Math.abs(actual - expected)).toBeLessThanOrEqual(expected * 0.001 + 0.001);

describe('summarize', () => {
  it('gives the percentiles, maximum and mean of the latencies recorded, in ms', () => {
    const histogram = newHistogram();
    for (let ms = 1; ms <= 1_000; ms++) recordMs(histogram, ms);
    const summary = summarize(histogram);
    expect(summary.count).toBe(1_000);
    near(summary.p50, 500);
    near(summary.p90, 900);
    near(summary.p99, 990);
    near(summary.p999, 999);
    near(summary.max, 1_000);
    near(summary.mean, 500.5);
  });

  it('counts a latency under a microsecond as one, and gives zeros for no latency at all', () => {
    const histogram = newHistogram();
    recordMs(histogram, 0);
    expect(summarize(histogram)).toMatchObject({ count: 1, p50: 0.001, max: 0.001 });
    expect(summarize(newHistogram())).toEqual({ count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 });
  });
});

describe('histogramDelta', () => {
  const scrape = (buckets: Record<string, number>, sum: number) =>
    parsePrometheus(
      [
        ...Object.entries(buckets).map(([le, count]) => `x_seconds_bucket{gateway="g",le="${le}"} ${count}`),
        `x_seconds_sum{gateway="g"} ${sum}`,
      ].join('\n'),
    );

  it("takes what two processes' histograms gained between two scrapes, and interpolates its quantiles within a bucket", () => {
    const before = [
      scrape({ '0.001': 10, '0.005': 20, '0.01': 30, '+Inf': 30 }, 0.1),
      scrape({ '0.001': 0, '0.005': 0, '0.01': 0, '+Inf': 0 }, 0),
    ];
    const after = [
      scrape({ '0.001': 10, '0.005': 70, '0.01': 120, '+Inf': 130 }, 1.1),
      scrape({ '0.001': 0, '0.005': 0, '0.01': 100, '+Inf': 100 }, 0.8),
    ];
    // Gained: 50 in (0.001, 0.005], 140 in (0.005, 0.01], 10 above: 200 in all, 1.8 s.
    const figures = histogramDelta(before, after, 'x_seconds');
    expect(figures?.count).toBe(200);
    expect(figures?.mean).toBeCloseTo(0.009, 9);
    // The 100th of 200 is the 50th of the 140 in (0.005, 0.01]; the 180th its 130th.
    expect(figures?.p50).toBeCloseTo(0.005 + (0.005 * 50) / 140, 9);
    expect(figures?.p90).toBeCloseTo(0.005 + (0.005 * 130) / 140, 9);
    // The 198th is above the last finite bound: that bound is all that is known.
    expect(figures?.p99).toBe(0.01);
  });

  it('gives nothing when the histogram gained nothing', () => {
    const same = [scrape({ '0.01': 5, '+Inf': 5 }, 0.02)];
    expect(histogramDelta(same, same, 'x_seconds')).toBeUndefined();
  });
});
