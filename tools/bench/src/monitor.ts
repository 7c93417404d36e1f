import { type IntervalHistogram, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

export interface GeneratorSample {
  /** Fraction of one core the bench process used over the last interval. */
  cpu: number;
  /** Event-loop delay p99 over the last interval, ms. */
  lagP99: number;
  lagMax: number;
}

export interface GeneratorStats {
  cpuMean: number;
  cpuMax: number;
  lagP99Max: number;
  lagMax: number;
  /** Garbage-collection pauses of the generator itself (all kinds), ms. */
  gcPauseTotalMs: number;
  gcPauseMaxMs: number;
  /** The generator itself may have limited the figures. */
  bottleneck: boolean;
  warnings: string[];
}

export const CPU_WARN = 0.8;
export const LAG_WARN_MS = 20;
/** The delay monitor's sampling interval, ms; its figures include it, so it is subtracted. */
const RESOLUTION_MS = 2;

/** Watches the load generator's own CPU and event-loop delay, once per `sample()`. */
export class GeneratorMonitor {
  private readonly delay: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();
  private samples: GeneratorSample[] = [];
  private gcTotal = 0;
  private gcMax = 0;
  private readonly gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      this.gcTotal += entry.duration;
      this.gcMax = Math.max(this.gcMax, entry.duration);
    }
  });

  constructor() {
    this.delay.enable();
    this.gc.observe({ entryTypes: ['gc'] });
  }

  sample(): GeneratorSample {
    const now = performance.now();
    const cpu = process.cpuUsage(this.lastCpu);
    const elapsedMs = Math.max(1, now - this.lastAt);
    this.lastCpu = process.cpuUsage();
    this.lastAt = now;
    const sample = {
      cpu: (cpu.user + cpu.system) / 1000 / elapsedMs,
      lagP99: this.delay.count > 0 ? Math.max(0, this.delay.percentile(99) / 1e6 - RESOLUTION_MS) : 0,
      lagMax: this.delay.count > 0 ? Math.max(0, this.delay.max / 1e6 - RESOLUTION_MS) : 0,
    };
    this.delay.reset();
    this.samples.push(sample);
    return sample;
  }

  /** Starts a new window of samples (e.g. at the end of the warm-up). */
  reset(): void {
    this.sample();
    this.samples = [];
    this.gcTotal = 0;
    this.gcMax = 0;
  }

  stats(): GeneratorStats {
    const samples = this.samples;
    const cpuMean = samples.length ? samples.reduce((sum, s) => sum + s.cpu, 0) / samples.length : 0;
    const cpuMax = samples.reduce((max, s) => Math.max(max, s.cpu), 0);
    const lagP99Max = samples.reduce((max, s) => Math.max(max, s.lagP99), 0);
    const lagMax = samples.reduce((max, s) => Math.max(max, s.lagMax), 0);
    const warnings: string[] = [];
    if (cpuMean > CPU_WARN)
      warnings.push(
        `the load generator used ${(cpuMean * 100).toFixed(0)}% of one core: it may be the bottleneck, not the system under test`,
      );
    if (this.gcMax > LAG_WARN_MS)
      warnings.push(
        `the load generator paused up to ${this.gcMax.toFixed(0)} ms for its own garbage collection: latencies include that pause`,
      );
    if (lagP99Max > LAG_WARN_MS)
      warnings.push(
        `the load generator's event loop lagged up to ${lagP99Max.toFixed(1)} ms (p99 of a second): latencies include that lag`,
      );
    return {
      cpuMean: round(cpuMean, 3),
      cpuMax: round(cpuMax, 3),
      lagP99Max: round(lagP99Max, 2),
      lagMax: round(lagMax, 2),
      gcPauseTotalMs: round(this.gcTotal, 1),
      gcPauseMaxMs: round(this.gcMax, 1),
      bottleneck: warnings.length > 0,
      warnings,
    };
  }

  stop(): void {
    this.delay.disable();
    this.gc.disconnect();
  }
}

export const round = (value: number, digits = 2) => {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
};
