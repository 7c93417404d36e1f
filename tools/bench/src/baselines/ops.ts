import { createServer, type Server } from 'node:http';
import { constants, PerformanceObserver } from 'node:perf_hooks';

/** prom-client's buckets for `nodejs_gc_duration_seconds`, which the services report. */
const GC_BUCKETS = [0.001, 0.01, 0.1, 1, 2, 5];
const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/** The process's garbage collections, as the same histogram as the services' (so idle memory can tell when V8 collected). */
function observeGc(): () => string[] {
  const kinds = new Map<string, { buckets: number[]; sum: number; count: number }>();
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = GC_KINDS[(entry as { detail?: { kind?: number } }).detail?.kind ?? -1];
      if (!kind) continue;
      const figures = kinds.get(kind) ?? { buckets: GC_BUCKETS.map(() => 0), sum: 0, count: 0 };
      const seconds = entry.duration / 1000;
      GC_BUCKETS.forEach((bound, index) => {
        if (seconds <= bound) figures.buckets[index] = (figures.buckets[index] ?? 0) + 1;
      });
      figures.sum += seconds;
      figures.count += 1;
      kinds.set(kind, figures);
    }
  }).observe({ entryTypes: ['gc'] });
  return () => [
    '# TYPE nodejs_gc_duration_seconds histogram',
    ...[...kinds].flatMap(([kind, { buckets, sum, count }]) => [
      ...GC_BUCKETS.map((bound, index) => `nodejs_gc_duration_seconds_bucket{le="${bound}",kind="${kind}"} ${buckets[index]}`),
      `nodejs_gc_duration_seconds_bucket{le="+Inf",kind="${kind}"} ${count}`,
      `nodejs_gc_duration_seconds_sum{kind="${kind}"} ${sum}`,
      `nodejs_gc_duration_seconds_count{kind="${kind}"} ${count}`,
    ]),
  ];
}

/**
 * The ops port of a baseline server, like the services': `/readyz` and `/metrics` with the
 * process's CPU, resident memory and garbage collections, so the bench reads every system the same way.
 */
export function startOpsPort(port: number, host: string): Server {
  const gcLines = observeGc();
  const server = createServer((request, response) => {
    if (request.url === '/metrics') {
      const cpu = process.cpuUsage();
      const body = [
        '# TYPE process_cpu_seconds_total counter',
        `process_cpu_seconds_total ${(cpu.user + cpu.system) / 1e6}`,
        '# TYPE process_resident_memory_bytes gauge',
        `process_resident_memory_bytes ${process.memoryUsage.rss()}`,
        '# TYPE nodejs_heap_size_used_bytes gauge',
        `nodejs_heap_size_used_bytes ${process.memoryUsage().heapUsed}`,
        '# TYPE nodejs_external_memory_bytes gauge',
        `nodejs_external_memory_bytes ${process.memoryUsage().external}`,
        ...gcLines(),
        '',
      ].join('\n');
      response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(body);
      return;
    }
    if (request.url === '/readyz' || request.url === '/healthz') {
      response.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    response.writeHead(404).end();
  });
  server.listen(port, host);
  return server;
}

export function listenPorts(): { port: number; opsPort: number; host: string } {
  return { port: Number(process.env.PORT ?? 0), opsPort: Number(process.env.OPS_PORT ?? 0), host: process.env.HOST ?? '127.0.0.1' };
}
