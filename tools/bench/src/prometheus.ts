/** A scrape of a Prometheus text endpoint: every sample, keyed by its series (`name{labels}`). */
export interface Scrape {
  readonly at: number;
  readonly samples: Map<string, number>;
}

export function parsePrometheus(text: string, at = performance.now()): Scrape {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    if (space < 0) continue;
    const value = Number(line.slice(space + 1));
    if (!Number.isNaN(value)) samples.set(line.slice(0, space), value);
  }
  return { at, samples };
}

export async function scrape(url: string, timeoutMs = 5_000): Promise<Scrape> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return parsePrometheus(await response.text());
}

/**
 * The sum of every series of metric `name` whose labels include all of `labels`
 * (e.g. `{ outcome: 'stored' }`). 0 when there is none.
 */
export function metric(scrape: Scrape | undefined, name: string, labels: Record<string, string> = {}): number {
  if (!scrape) return 0;
  let total = 0;
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  for (const [series, value] of scrape.samples) {
    const brace = series.indexOf('{');
    const seriesName = brace < 0 ? series : series.slice(0, brace);
    if (seriesName !== name) continue;
    if (wanted.every((label) => series.includes(label))) total += value;
  }
  return total;
}

export interface HistogramFigures {
  count: number;
  mean: number;
  /** Quantiles estimated from the buckets (linear within a bucket), as Prometheus' histogram_quantile does. */
  p50: number;
  p90: number;
  p99: number;
}

/** Buckets (by upper bound) of histogram `name`, summed over series and over scrapes. */
function buckets(scrapes: readonly (Scrape | undefined)[], name: string): Map<number, number> {
  const counts = new Map<number, number>();
  for (const scraped of scrapes) {
    if (!scraped) continue;
    for (const [series, value] of scraped.samples) {
      if (!series.startsWith(`${name}_bucket{`)) continue;
      const le = /le="([^"]+)"/.exec(series)?.[1];
      if (le === undefined) continue;
      const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le);
      counts.set(bound, (counts.get(bound) ?? 0) + value);
    }
  }
  return counts;
}

/** The change of histogram `name` between two sets of scrapes (e.g. every gateway at window start and end). */
export function histogramDelta(
  before: readonly (Scrape | undefined)[],
  after: readonly (Scrape | undefined)[],
  name: string,
): HistogramFigures | undefined {
  const start = buckets(before, name);
  const end = buckets(after, name);
  const bounds = [...end.keys()].sort((a, b) => a - b);
  const cumulative = bounds.map((bound) => ({ bound, count: (end.get(bound) ?? 0) - (start.get(bound) ?? 0) }));
  const total = cumulative[cumulative.length - 1]?.count ?? 0;
  if (total <= 0) return undefined;
  const sum = (scrapes: readonly (Scrape | undefined)[]) => scrapes.reduce((acc, scraped) => acc + metric(scraped, `${name}_sum`), 0);
  const quantile = (q: number) => {
    const rank = q * total;
    let lowerBound = 0;
    let lowerCount = 0;
    for (const { bound, count } of cumulative) {
      if (count >= rank) {
        if (!Number.isFinite(bound)) return lowerBound;
        return lowerBound + ((bound - lowerBound) * (rank - lowerCount)) / Math.max(1, count - lowerCount);
      }
      lowerBound = bound;
      lowerCount = count;
    }
    return lowerBound;
  };
  return { count: total, mean: (sum(after) - sum(before)) / total, p50: quantile(0.5), p90: quantile(0.9), p99: quantile(0.99) };
}
