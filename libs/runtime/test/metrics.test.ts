import { once } from 'node:events';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import perfHooks from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createMetricsRegistry, EVENT_LOOP_MONITORING_PRECISION_MS, PER_HANDLE_METRICS } from '@switchboard/runtime';
import type { Histogram } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';

const metricNames = (exposition: string) =>
  new Set(
    exposition
      .split('\n')
      .filter((line) => line.startsWith('# TYPE '))
      .map((line) => line.split(' ')[2]),
  );

afterEach(() => {
  vi.restoreAllMocks();
});

describe('createMetricsRegistry', () => {
  it('exposes the process metrics operators chart, with the service label', async () => {
    const text = await createMetricsRegistry('tester').metrics();
    const names = metricNames(text);
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_p99_seconds',
      'nodejs_gc_duration_seconds',
      'process_max_fds',
    ]) {
      expect(names, name).toContain(name);
    }
    expect(text).toMatch(/process_cpu_seconds_total\{service="tester"\} \d/);
  });

  it('counts every garbage collection, also those Node reports together in one turn of the event loop', async () => {
    const registry = createMetricsRegistry('tester');
    const majors = async () => {
      const { values } = await (registry.getSingleMetric('nodejs_gc_duration_seconds') as Histogram).get();
      return values.find((value) => value.metricName === 'nodejs_gc_duration_seconds_count' && value.labels.kind === 'major')?.value ?? 0;
    };
    // What Node reports, read beside the registry: V8 may add a full collection of its own in the
    // window (one more on Node 26 under vitest), which the registry must count as well.
    let reported = 0;
    const observer = new perfHooks.PerformanceObserver((list) => {
      for (const entry of list.getEntries())
        if ((entry as { detail?: { kind?: number } }).detail?.kind === perfHooks.constants.NODE_PERFORMANCE_GC_MAJOR) reported++;
    });
    observer.observe({ entryTypes: ['gc'] });
    await sleep(50);
    const before = await majors();
    reported = 0;
    setFlagsFromString('--expose-gc');
    const collect = runInNewContext('gc') as () => void;
    // Three full collections in one turn: Node hands them to observers in one list.
    collect();
    collect();
    collect();
    await sleep(50);
    observer.disconnect();
    expect(reported).toBeGreaterThanOrEqual(3);
    expect((await majors()) - before).toBe(reported);
    // One series per kind, with the service label, as prom-client's.
    expect(await registry.metrics()).toMatch(/nodejs_gc_duration_seconds_count\{service="tester",kind="major"\} \d+/);
  });

  it('samples the event-loop delay every 100 ms rather than every 10, so an idle service is not woken 100 times a second', () => {
    const monitor = vi.spyOn(perfHooks, 'monitorEventLoopDelay');
    createMetricsRegistry('tester');
    expect(EVENT_LOOP_MONITORING_PRECISION_MS).toBe(100);
    expect(monitor).toHaveBeenCalledWith({ resolution: EVENT_LOOP_MONITORING_PRECISION_MS });
  });

  it("gives the event loop's delay net of the monitor's interval: near 0 between runs on time, the stall when there is one", async () => {
    const registry = createMetricsRegistry('tester');
    const stat = (text: string, name: string) =>
      Number(new RegExp(`^nodejs_eventloop_lag_${name}_seconds\\{service="tester"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    await registry.metrics(); // from here on
    await sleep(1_000);
    // The run that came most on time: before, the interval itself (about 0.099 s).
    expect(stat(await registry.metrics(), 'min')).toBeLessThan(0.05);
    await sleep(150);
    const until = performance.now() + 300;
    while (performance.now() < until) {
      // a stall of 300 ms
    }
    await sleep(150);
    expect(stat(await registry.metrics(), 'max')).toBeGreaterThan(0.15);
  });

  it('leaves out the metrics that walk every handle at each scrape, so a gateway with many sockets is not stalled by one', async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 200; i++) {
        const socket = tcpConnect(port, '127.0.0.1');
        await once(socket, 'connect');
        sockets.push(socket);
      }
      const handles = vi.spyOn(process as unknown as { _getActiveHandles(): unknown[] }, '_getActiveHandles');
      const resources = vi.spyOn(process, 'getActiveResourcesInfo');
      const text = await createMetricsRegistry('tester').metrics();
      const names = metricNames(text);
      for (const name of PER_HANDLE_METRICS) expect(names, name).not.toContain(name);
      expect(handles).not.toHaveBeenCalled();
      expect(resources).not.toHaveBeenCalled();
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });
});
