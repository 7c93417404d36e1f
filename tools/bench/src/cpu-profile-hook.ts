/**
 * Preloaded into a service with `NODE_OPTIONS=--import …/cpu-profile-hook.js` (Node 20 refuses
 * `--cpu-prof` in NODE_OPTIONS): samples the CPU with the V8 profiler from the first SIGUSR2 (the
 * bench sends it when its measurement window opens) and writes a `.cpuprofile` into
 * BENCH_CPU_PROFILE_DIR on the second (before the bench closes its connections), or at the latest
 * when the service is told to stop.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE_DIR;
if (dir) {
  const profileDir = dir;
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  let started = false;
  let written = false;
  process.on('SIGUSR2', () => {
    if (started) return write();
    started = true;
    session.post('Profiler.start');
  });
  function write() {
    if (!started || written) return;
    written = true;
    session.post('Profiler.stop', (error, result) => {
      if (error) return;
      mkdirSync(profileDir, { recursive: true });
      writeFileSync(join(profileDir, `${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  }
  process.prependListener('SIGTERM', write);
  process.prependListener('SIGINT', write);
  process.on('exit', write);
}
