import { constants, PerformanceObserver } from 'node:perf_hooks';
import { type Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Default metrics that cost a walk over every handle or file descriptor of the process at each
 * scrape: in a process holding 12,000 sockets a scrape blocked the event loop for 50-280 ms, and a
 * gateway under load answered /metrics in 60-70 ms, every connection's messages waiting behind
 * it. The gateway counts its connections itself (`switchboard_gateway_connections`).
 */
export const PER_HANDLE_METRICS = [
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_resources',
  'nodejs_active_resources_total',
  'nodejs_active_requests',
  'nodejs_active_requests_total',
  'process_open_fds',
] as const;

/**
 * How often the event-loop delay monitor behind `nodejs_eventloop_lag_*` samples. prom-client's
 * 10 ms woke every process 100 times a second for it (a gateway twice per tick), most of what an
 * idle service spent: measured over 20 s, an idle gateway used about 9 ms of CPU per second with
 * it and 4.5 with 100 ms, persistence and auth about 13 and 8.5. Stalls of the kind worth
 * charting (tens of milliseconds and more) still show: the monitor records the time from one of
 * its runs to the next, which a stall lengthens, and the series give that net of the interval.
 */
export const EVENT_LOOP_MONITORING_PRECISION_MS = 100;

/** prom-client's statistics of the event-loop delay monitor, each read net of its interval below (not the stddev). */
const EVENT_LOOP_DELAY_STATS = ['min', 'max', 'mean', 'p50', 'p90', 'p99'] as const;

/**
 * `nodejs_eventloop_lag_{min,max,mean,p50,p90,p99}_seconds` net of the monitor's interval. Node's
 * monitor records the time between its timer's runs, interval included, and prom-client passes it
 * on: an idle service read a p99 of 0.100 s, the dashboard's first threshold, and
 * `SwitchboardEventLoopLag`'s 0.5 s meant a stall of 0.4. prom-client sets these gauges when its
 * `nodejs_eventloop_lag_seconds` is collected, which comes first in a scrape (it was registered
 * first); each is replaced by one that reads it then and takes the interval off.
 */
function eventLoopDelayNetOfInterval(registry: Registry): void {
  const intervalSeconds = EVENT_LOOP_MONITORING_PRECISION_MS / 1000;
  for (const stat of EVENT_LOOP_DELAY_STATS) {
    const name = `nodejs_eventloop_lag_${stat}_seconds`;
    const raw = registry.getSingleMetric(name) as Gauge | undefined;
    if (!raw) continue;
    registry.removeSingleMetric(name);
    new Gauge({
      name,
      help: `The ${stat} of the event loop's delay (in seconds) since the last scrape, net of the ${EVENT_LOOP_MONITORING_PRECISION_MS} ms between the monitor's runs.`,
      registers: [registry],
      async collect() {
        const value = (await raw.get()).values[0]?.value;
        if (value !== undefined) this.set(Math.max(0, value - intervalSeconds));
      },
    });
  }
}

const GC_DURATION_METRIC = 'nodejs_gc_duration_seconds';
const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/**
 * `nodejs_gc_duration_seconds`, prom-client's histogram with every collection in it. Its own
 * observer records only the first entry of each list Node hands it, and Node hands over at once
 * the collections of one turn of the event loop (under load a scavenge and an incremental
 * marking step, or two full collections in a row): those after the first were left out.
 */
function observeEveryCollection(registry: Registry): void {
  registry.removeSingleMetric(GC_DURATION_METRIC);
  const histogram = new Histogram({
    name: GC_DURATION_METRIC,
    help: 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
    labelNames: ['kind'],
    buckets: [0.001, 0.01, 0.1, 1, 2, 5],
    registers: [registry],
  });
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = GC_KINDS[(entry as { detail?: { kind?: number } }).detail?.kind ?? -1];
      if (kind) histogram.observe({ kind }, entry.duration / 1000);
    }
  }).observe({ entryTypes: ['gc'] });
}

/**
 * A registry per process with Node's default process metrics (CPU, memory, heap, GC, event-loop
 * lag; not the per-handle ones above) and a `service` label on every series.
 */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_MONITORING_PRECISION_MS });
  for (const name of PER_HANDLE_METRICS) registry.removeSingleMetric(name);
  eventLoopDelayNetOfInterval(registry);
  observeEveryCollection(registry);
  return registry;
}

/** Sum of a counter's series whose labels include `labels` (all series when empty). */
export async function counterTotal(counter: Counter<string>, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await counter.get();
  return values
    .filter((value) => Object.entries(labels).every(([key, wanted]) => value.labels[key] === wanted))
    .reduce((sum, value) => sum + value.value, 0);
}
