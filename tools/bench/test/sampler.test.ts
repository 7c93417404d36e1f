import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The built module: its thread runs the compiled sampler-worker.js beside it.
import { startSampler } from '../dist/sampler.js';

/** A /metrics endpoint in a process of its own, whose counter grows by 10 at each read. */
let server: ChildProcess;
let url = '';

beforeAll(async () => {
  server = spawn(
    process.execPath,
    [
      '-e',
      `let n = 0;
       const s = require('node:http').createServer((q, r) => { n += 10; r.end('# TYPE stored_total counter\\nstored_total{outcome="stored"} ' + n + '\\n'); });
       s.listen(0, '127.0.0.1', () => console.log(s.address().port));`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const [chunk] = (await once(server.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  url = `http://127.0.0.1:${chunk.toString().trim()}/metrics`;
});

afterAll(() => {
  server?.kill();
});

describe('startSampler', () => {
  it('reads the counter on its own thread while this one is too busy to, with what was published then', async () => {
    const published = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
    const startedAtMs = performance.timeOrigin + performance.now();
    const sampler = startSampler({
      url,
      metric: 'stored_total',
      labels: { outcome: 'stored' },
      base: 5,
      startedAtMs,
      intervalMs: 200,
      published,
    });
    // This thread does nothing else for 3 s but count, as a generator busy publishing.
    const until = performance.now() + 3_000;
    while (performance.now() < until) Atomics.add(published, 0, 1);
    const samples = await sampler.stop();

    // Every 200 ms, or as fast as a loaded machine answers: at least a few within the 3 s.
    const during = samples.filter((sample) => sample.t < 3);
    expect(during.length).toBeGreaterThanOrEqual(3);
    expect(during.map((sample) => sample.stored)).toEqual(during.map((_, index) => 10 * (index + 1) - 5));
    for (const [index, sample] of during.entries()) {
      expect(sample.published).toBeGreaterThan(0);
      if (index > 0) expect(sample.published).toBeGreaterThan(during[index - 1]?.published ?? 0);
    }
  });
});
