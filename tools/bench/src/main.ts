/**
 * `npm run bench`: starts Switchboard as in production on this machine (or targets running
 * gateways), drives it with an open-loop load generator, measures with HdrHistograms, and runs
 * the same load against two baselines (plain `ws`; Socket.IO with the Redis adapter). Writes
 * bench-results/<timestamp>.json and prints a markdown report. See docs/performance.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '@switchboard/testing';
import { setContentSize } from './driver.js';
import { setProfileDir } from './drivers/switchboard.js';
import { isClean, type PhaseResult } from './load.js';
import { cleanupAll, installSignalHandlers } from './processes.js';
import { type HeapProfileSummary, type ProfileSummary, summarizeHeapProfiles, summarizeProfiles } from './profile.js';
import { type BenchResults, heapProfileMarkdown, markdown, profileMarkdown, targetsOf } from './report.js';
import {
  type BenchContext,
  compare,
  FANOUT,
  idleMemory,
  type LoadParams,
  PERSISTENCE,
  persistenceScenario,
  QUICK,
  RAMP,
  ramp,
  SCALE_OUT,
  STEADY,
  scaleOut,
  TARGET,
} from './scenarios.js';

const SCENARIOS = ['steady', 'fanout', 'ramp', 'idle-memory', 'scale-out', 'persistence', 'target'] as const;
type Scenario = (typeof SCENARIOS)[number] | 'quick';

const HELP = `npm run bench -- [options]

  --scenario NAME[,NAME]  steady (default), ramp, idle-memory, fanout, scale-out, persistence, target
  --full                  every scenario, with baselines
  --quick                 a tiny steady run (CI smoke test); no baselines unless --baselines
  --baselines / --no-baselines   run the plain-ws and Socket.IO + Redis baselines too (default: on, off for --quick)
  --connections N --sessions S --rate R --duration T --warmup W --gateways G   override the scenario's load
  --idle-connections N    connections for idle-memory (default 10000, scaled to ulimit -n)
  --content-chars C       message length (default 100)
  --backlog N             messages in the persistence scenario's backlog (default 100000)
  --target ws://a,ws://b  drive running gateways instead of starting the system
  --auth http://host:2347 the auth API of the target   --admin user:password  an admin, to create agents
  --metrics http://ops1/metrics,…  the target's metrics endpoints (CPU, memory)
  --profile DIR           run gateways and persistence under node --cpu-prof (profiles in a new directory under DIR) and list the top costs
  --heap-profile DIR      the same with V8's sampling heap profiler: where they allocate (.heapprofile, for DevTools)
  --out DIR               where the JSON goes (default bench-results/)
  --json-only             print only the JSON result on stdout
`;

const { values } = parseArgs({
  options: {
    scenario: { type: 'string' },
    full: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    baselines: { type: 'boolean' },
    'no-baselines': { type: 'boolean', default: false },
    connections: { type: 'string' },
    sessions: { type: 'string' },
    rate: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    gateways: { type: 'string' },
    'idle-connections': { type: 'string' },
    'content-chars': { type: 'string' },
    backlog: { type: 'string' },
    profile: { type: 'string' },
    'heap-profile': { type: 'string' },
    target: { type: 'string' },
    auth: { type: 'string' },
    admin: { type: 'string' },
    metrics: { type: 'string' },
    out: { type: 'string' },
    'json-only': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

const jsonOnly = values['json-only'] ?? false;
const log = (line: string) => {
  if (!jsonOnly) process.stderr.write(`${line}\n`);
};
installSignalHandlers((line) => process.stderr.write(`${line}\n`));

/** A flag's number: counts must be whole, and only the warm-up may be 0. */
const number = (value: string | undefined, name: string, { integer = false, zero = false } = {}): number | undefined => {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0 || (parsed === 0 && !zero) || (integer && !Number.isInteger(parsed)))
    throw new Error(`--${name} must be a ${integer ? 'whole number' : 'number'} ${zero ? 'of 0 or more' : 'above 0'}`);
  return parsed;
};

const overrides: Partial<LoadParams> = {};
for (const [key, flag, rules] of [
  ['connections', 'connections', { integer: true }],
  ['sessions', 'sessions', { integer: true }],
  ['rate', 'rate', {}],
  ['durationS', 'duration', {}],
  ['warmupS', 'warmup', { zero: true }],
  ['gateways', 'gateways', { integer: true }],
] as const) {
  const value = number(values[flag], flag, rules);
  if (value !== undefined) overrides[key] = value;
}
const contentChars = number(values['content-chars'], 'content-chars', { integer: true }) ?? 100;
setContentSize(contentChars);

let scenarios: Scenario[];
if (values.full) scenarios = [...SCENARIOS];
else if (values.quick) scenarios = ['quick'];
else if (values.scenario) {
  scenarios = values.scenario.split(',').map((name) => name.trim()) as Scenario[];
  for (const name of scenarios) if (name !== 'quick' && !SCENARIOS.includes(name)) throw new Error(`unknown scenario ${name}; see --help`);
} else scenarios = ['steady'];

const baselines = values['no-baselines'] ? false : (values.baselines ?? !values.quick);
const target = values.target
  ? {
      wsUrls: values.target.split(',').map((url) => url.trim()),
      authUrl: values.auth ?? 'http://127.0.0.1:2347',
      admin: values.admin ?? process.env.BENCH_ADMIN,
      metricsUrls: values.metrics ? values.metrics.split(',').map((url) => url.trim()) : [],
    }
  : undefined;

if (values.profile && values['heap-profile']) throw new Error('--profile and --heap-profile cannot run together');
// A directory of its own for each run, under the one given: the summary reads every profile
// beneath it, and a second run into the same directory listed the first run's processes too.
const runDir = (dir: string) => join(resolve(dir), new Date().toISOString().replace(/[:.]/g, '-'));
const heapProfileDir = values['heap-profile'] ? runDir(values['heap-profile']) : undefined;
const profileDir = values.profile ? runDir(values.profile) : heapProfileDir;
if (profileDir) {
  mkdirSync(profileDir, { recursive: true });
  log(`profiles in ${profileDir}`);
  setProfileDir(profileDir, heapProfileDir ? 'heap' : 'cpu');
}

const context: BenchContext = { log, progress: !jsonOnly, target, baselines, warnings: [], overrides };
const startedAt = new Date();
const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? 'unknown',
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  platform: `${process.platform} ${process.arch}`,
  loadAverageAtStart: loadavg().map((value) => Math.round(value * 100) / 100),
  loadAverageAtEnd: [] as number[],
};
log(
  `bench: ${scenarios.join(', ')}${baselines ? ' with baselines' : ''}; load average ${machine.loadAverageAtStart.join(' ')} on ${machine.cpus} cores`,
);

const results: BenchResults & Record<string, unknown> = { scenarios: {} };
const errors: Record<string, string> = {};
const loadAverages: Record<string, number[]> = {};

for (const scenario of scenarios) {
  loadAverages[scenario] = loadavg().map((value) => Math.round(value * 100) / 100);
  log(`\n=== ${scenario} (load average ${loadAverages[scenario]?.join(' ')}) ===`);
  try {
    switch (scenario) {
      case 'quick':
        results.scenarios.quick = await compare(context, 'quick', QUICK, baselines);
        break;
      case 'steady':
        results.scenarios.steady = await compare(context, 'steady', STEADY, baselines);
        break;
      case 'fanout':
        results.scenarios.fanout = await compare(context, 'fanout', FANOUT, baselines);
        break;
      case 'target':
        // The targets concern Switchboard; the baselines run here with --full or --baselines.
        results.scenarios.target = await compare(context, 'target', TARGET, baselines && (values.full || values.baselines === true));
        break;
      case 'ramp':
        results.scenarios.ramp = await ramp(context, RAMP, baselines);
        break;
      case 'idle-memory':
        results.scenarios['idle-memory'] = await idleMemory(
          context,
          number(values['idle-connections'], 'idle-connections', { integer: true }) ?? 10_000,
          baselines,
        );
        break;
      case 'scale-out':
        results.scenarios['scale-out'] = await scaleOut(context, SCALE_OUT, [1, 2, 4]);
        break;
      case 'persistence':
        results.scenarios.persistence = await persistenceScenario(context, {
          ...PERSISTENCE,
          ...(overrides.durationS ? { durationS: overrides.durationS } : {}),
          ...(overrides.sessions ? { sessions: overrides.sessions } : {}),
          ...(values.backlog ? { backlog: number(values.backlog, 'backlog') ?? PERSISTENCE.backlog } : {}),
        });
        break;
    }
  } catch (error) {
    errors[scenario] = error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`scenario ${scenario} failed: ${errors[scenario]}\n`);
  }
}

await cleanupAll();
machine.loadAverageAtEnd = loadavg().map((value) => Math.round(value * 100) / 100);

let profiles: ProfileSummary[] | undefined;
let heapProfiles: HeapProfileSummary[] | undefined;
if (profileDir) {
  try {
    if (heapProfileDir) heapProfiles = summarizeHeapProfiles(heapProfileDir);
    else profiles = summarizeProfiles(profileDir);
  } catch (error) {
    context.warnings.push(`reading the profiles failed: ${String(error)}`);
  }
}

const phases: PhaseResult[] = [];
const s = results.scenarios;
for (const comparison of [s.quick, s.steady, s.fanout, s.target]) if (comparison) phases.push(...comparison.runs);
for (const step of s['scale-out']?.steps ?? []) phases.push(step.result);
const unclean = phases.filter((phase) => !isClean(phase));
const targets = targetsOf(results, {
  targetGateways: target?.wsUrls.length,
  contentChars,
  profiled: profileDir !== undefined,
});
const output = {
  version: 2,
  startedAt: startedAt.toISOString(),
  finishedAt: new Date().toISOString(),
  machine,
  loadAverageAtScenarioStart: loadAverages,
  options: { scenarios, baselines, target: target ? { ...target, admin: target.admin ? '(set)' : undefined } : undefined, overrides },
  clean: unclean.length === 0 && Object.keys(errors).length === 0,
  scenarios: results.scenarios,
  targets,
  profiles,
  heapProfiles,
  warnings: context.warnings,
  errors,
};

const outDir = resolve(values.out ?? join(REPO_ROOT, 'bench-results'));
mkdirSync(outDir, { recursive: true });
const file = join(outDir, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify(output, null, 2)}\n`);

if (jsonOnly) process.stdout.write(`${JSON.stringify(output)}\n`);
else {
  process.stdout.write(
    `\n${markdown(results, scenarios.includes('quick') ? [] : targets.filter((row) => row.measured !== '–'), context.warnings, errors)}`,
  );
  for (const profile of profiles ?? []) process.stdout.write(`\n${profileMarkdown(profile)}`);
  for (const profile of heapProfiles ?? []) process.stdout.write(`\n${heapProfileMarkdown(profile)}`);
  process.stdout.write(
    `\nload average ${machine.loadAverageAtStart.join(' ')} at start, ${machine.loadAverageAtEnd.join(' ')} at end; results in ${file}\n`,
  );
}
process.exit(Object.keys(errors).length > 0 || unclean.length > 0 ? 1 : 0);
