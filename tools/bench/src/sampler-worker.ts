import { setTimeout as sleep } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { metric, scrape } from './prometheus.js';
import { type CounterSample, monotonicMs as now, type SamplerOptions } from './sampler.js';

/** The sampling thread of `startSampler`: reads the counter every interval until told to stop. */
const options = workerData as SamplerOptions;
let stopping = false;
parentPort?.on('message', () => {
  stopping = true;
});

while (!stopping) {
  const asked = now();
  const scraped = await scrape(options.url).catch(() => undefined);
  if (scraped) {
    // Timed at the middle of its request, so a slow answer does not skew the rate.
    const sample: CounterSample = {
      t: ((asked + now()) / 2 - options.startedAtMs) / 1000,
      published: Atomics.load(options.published, 0),
      stored: metric(scraped, options.metric, options.labels) - options.base,
    };
    parentPort?.postMessage(sample);
  }
  await sleep(Math.max(0, options.intervalMs - (now() - asked)));
}
parentPort?.close();
