import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const CHILD = fileURLToPath(new URL('./fixtures/run-main-child.mjs', import.meta.url));
const children: ChildProcess[] = [];

interface Child {
  process: ChildProcess;
  lines: string[];
  /** Resolves when a line containing `text` has been written. */
  logged(text: string): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(env: Record<string, string>): Child {
  const child = spawn(process.execPath, [CHILD], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const lines: string[] = [];
  const waiting: { text: string; resolve: () => void }[] = [];
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    lines.push(...chunk.split('\n').filter(Boolean));
    for (const waiter of [...waiting])
      if (lines.some((line) => line.includes(waiter.text))) {
        waiting.splice(waiting.indexOf(waiter), 1);
        waiter.resolve();
      }
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  return {
    process: child,
    lines,
    exited,
    logged: (text) =>
      lines.some((line) => line.includes(text)) ? Promise.resolve() : new Promise((resolve) => waiting.push({ text, resolve })),
  };
}

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

describe('runMain', () => {
  it('stops a started service on SIGTERM and exits 0', async () => {
    const child = run({});
    await child.logged('"started"');
    child.process.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.lines.join('\n')).toContain('stop called');
  });

  it('exits 0 when start-up has not finished within the grace after SIGTERM, rather than timing out with 1', async () => {
    const child = run({ START_MS: '-1', START_GRACE_MS: '300', SHUTDOWN_TIMEOUT_MS: '20000' });
    await child.logged('starting');
    child.process.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.lines.join('\n')).toContain('start-up had not finished');
  });

  it('aborts a start that listens for it, which closes what it opened, and exits 0', async () => {
    // A grace the start would use up if nobody told it: it ends at once, not after the grace.
    const child = run({ START_ABORTABLE: '1', START_GRACE_MS: '10000' });
    await child.logged('starting');
    child.process.kill('SIGINT');
    // Before: 1, although the process stopped as it was told to.
    expect(await child.exited).toEqual({ code: 0, signal: null });
    const output = child.lines.join('\n');
    expect(output).toContain('start closed what it opened');
    expect(output).toContain('start-up was aborted');
    expect(output).not.toContain('start-up had not finished');
  });

  it('stops what a start finishing within the grace made', async () => {
    const child = run({ START_MS: '800', START_GRACE_MS: '10000' });
    await child.logged('starting');
    child.process.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    const output = child.lines.join('\n');
    expect(output).toContain('stop called');
    expect(output).not.toContain('start-up had not finished');
  });

  it('lets a stop in progress finish when the signal comes again', async () => {
    const child = run({ STOP_MS: '1000' });
    await child.logged('"started"');
    child.process.kill('SIGTERM');
    await child.logged('stop called');
    child.process.kill('SIGTERM');
    child.process.kill('SIGINT');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.lines.join('\n')).toContain('already shutting down');
  });

  it('exits 1 when the stop waits on nothing and overruns, instead of ending silently', async () => {
    const child = run({ STOP_HANGS: '1', SHUTDOWN_TIMEOUT_MS: '500' });
    await child.logged('"started"');
    child.process.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 1, signal: null });
    expect(child.lines.join('\n')).toContain('shutdown timed out');
  });
});
