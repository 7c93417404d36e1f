/**
 * Preloaded into a service with `NODE_OPTIONS=--import …/profile-hook.js` (Node 20 refuses
 * `--cpu-prof` in NODE_OPTIONS): from the first SIGUSR2 (the bench sends it when its measurement
 * window opens) it runs V8's CPU profiler, or with BENCH_PROFILE_KIND=heap its sampling heap
 * profiler, and on the second (before the bench closes its connections), or at the latest when the
 * service is told to stop, writes a `.cpuprofile` or `.heapprofile` into BENCH_CPU_PROFILE_DIR.
 *
 * The heap profile counts every sampled allocation of the window, also those the garbage
 * collector has freed since: what the process allocates, and so what its scavenges cost, rather
 * than what it keeps.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE_DIR;
const heap = process.env.BENCH_PROFILE_KIND === 'heap';
/** One sample per this many bytes allocated, on average. */
const HEAP_SAMPLING_INTERVAL = 16_384;

if (dir) {
  const profileDir = dir;
  const session = new Session();
  session.connect();
  if (!heap) {
    session.post('Profiler.enable');
    session.post('Profiler.setSamplingInterval', { interval: 500 });
  }
  let started = false;
  let written = false;
  process.on('SIGUSR2', () => {
    if (started) return write();
    started = true;
    if (heap)
      session.post('HeapProfiler.startSampling', {
        samplingInterval: HEAP_SAMPLING_INTERVAL,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
    else session.post('Profiler.start');
  });
  function write() {
    if (!started || written) return;
    written = true;
    const save = (name: string, profile: unknown) => {
      mkdirSync(profileDir, { recursive: true });
      writeFileSync(join(profileDir, name), JSON.stringify(profile));
    };
    if (heap)
      session.post('HeapProfiler.stopSampling', (error, result) => {
        if (!error) save(`${process.pid}.heapprofile`, result.profile);
      });
    else
      session.post('Profiler.stop', (error, result) => {
        if (!error) save(`${process.pid}.cpuprofile`, result.profile);
      });
  }
  process.prependListener('SIGTERM', write);
  process.prependListener('SIGINT', write);
  process.on('exit', write);
}
