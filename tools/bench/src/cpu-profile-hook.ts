/**
 * Preloaded into a service with `NODE_OPTIONS=--import …/cpu-profile-hook.js` (Node 20 refuses
 * `--cpu-prof` in NODE_OPTIONS): samples the CPU with the V8 profiler from start and writes a
 * `.cpuprofile` into BENCH_CPU_PROFILE_DIR when the service is told to stop (SIGTERM), that is
 * once the load is over.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
  let written = false;
  const write = () => {
    if (written) return;
    written = true;
    session.post('Profiler.stop', (error, result) => {
      if (error) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  };
  process.prependListener('SIGTERM', write);
  process.prependListener('SIGINT', write);
  process.on('exit', write);
}
