import { Worker } from 'node:worker_threads';

/** One reading of a counter while a load runs: seconds since the load started, and the two counts then. */
export interface CounterSample {
  t: number;
  published: number;
  stored: number;
}

/**
 * Milliseconds on the process's monotonic clock. Unlike `performance.timeOrigin +
 * performance.now()`, whose origin is a wall-clock reading taken as each thread starts, it is the
 * same clock on the main thread and the sampler's.
 */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** What the sampling thread is given. */
export interface SamplerOptions {
  /** The Prometheus endpoint to read. */
  url: string;
  metric: string;
  labels: Record<string, string>;
  /** Subtracted from every reading: the counter's value before the load. */
  base: number;
  /** When the load started, in ms on the process's monotonic clock (`monotonicMs()`), which every thread shares. */
  startedAtMs: number;
  intervalMs: number;
  /** Messages published so far, at index 0, counted by the load as it goes. */
  published: Int32Array;
}

/**
 * Reads a service's counter once a second on a thread of its own. The load generator's own event
 * loop cannot: a process with a thousand JetStream publishes in flight left a fetch to another
 * process's /metrics waiting 10 s and more, so the samples of a live rate came seconds late or
 * not at all (a rate of 0 reported for a run that stored 113,121 messages).
 */
export function startSampler(options: SamplerOptions, onSample?: (sample: CounterSample) => void): { stop(): Promise<CounterSample[]> } {
  const samples: CounterSample[] = [];
  const worker = new Worker(new URL('./sampler-worker.js', import.meta.url), { workerData: options });
  // A run that fails before `stop` must not be kept alive by its sampler.
  worker.unref();
  worker.on('message', (sample: CounterSample) => {
    samples.push(sample);
    onSample?.(sample);
  });
  const failed = new Promise<never>((_, reject) => worker.once('error', reject));
  failed.catch(() => undefined);
  return {
    async stop() {
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage('stop');
      await Promise.race([exited, failed]);
      return samples;
    },
  };
}
