import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSubjects, INBOUND_PARTITIONS } from '@switchboard/protocol';
import { AckPolicy, connect, type NatsConnection as NatsClient, RetentionPolicy, StorageType } from 'nats';
import pg from 'pg';
import type { System } from './driver.js';
import { startPlainWs, startSocketIo } from './drivers/baselines.js';
import {
  isProfiling,
  profileEnv,
  signalProfilers,
  startLocalSwitchboard,
  type TargetOptions,
  targetSwitchboard,
} from './drivers/switchboard.js';
import { fullCollectionsOf, isClean, MACHINE_BUSY_WARN, type PhaseResult, phaseWarnings, reportsGc, rssOf, runPhase } from './load.js';
import { round } from './monitor.js';
import { connz, type NatsConnection, startPrivateNats } from './nats-server.js';
import { makePlan, type Plan, type PlanOptions } from './plan.js';
import { localPortsTo, onCleanup, trackChild } from './processes.js';
import { metric, scrape } from './prometheus.js';
import { monotonicMs, startSampler } from './sampler.js';
import { Tracker } from './tracker.js';

export interface BenchContext {
  log: (line: string) => void;
  progress: boolean;
  target: TargetOptions | undefined;
  baselines: boolean;
  warnings: string[];
  /** Overrides of the scenario's load (`--connections`, `--sessions`, `--rate`, `--duration`, `--warmup`, `--gateways`). */
  overrides: Partial<LoadParams>;
}

export interface LoadParams {
  connections: number;
  sessions: number;
  membersRange?: readonly [number, number];
  rate: number;
  durationS: number;
  warmupS: number;
  gateways: number;
}

interface SystemFactory {
  name: string;
  start: () => Promise<System>;
}

export function switchboardFactory(context: BenchContext, gateways: number): SystemFactory {
  const { target } = context;
  return {
    name: 'switchboard',
    start: async () => (target ? targetSwitchboard(target) : (await startLocalSwitchboard({ gateways })).system),
  };
}

export const plainWsFactory: SystemFactory = { name: 'ws', start: startPlainWs };
export const socketIoFactory: SystemFactory = { name: 'socketio', start: () => startSocketIo(2) };

function factories(context: BenchContext, gateways: number, baselines: boolean): SystemFactory[] {
  return [switchboardFactory(context, gateways), ...(baselines ? [plainWsFactory, socketIoFactory] : [])];
}

const drainFor = (system: System) => (system.name === 'switchboard' ? 15 : 5);

function planOf(params: LoadParams): Plan {
  const options: PlanOptions = { sessions: params.sessions, connections: params.connections };
  if (params.membersRange) options.membersRange = params.membersRange;
  return makePlan(options);
}

function withOverrides(context: BenchContext, params: LoadParams): LoadParams {
  return { ...params, ...context.overrides };
}

/** Starts a system, connects the plan, runs `body`, and always disconnects and stops it. */
async function withSystem<T>(
  context: BenchContext,
  factory: SystemFactory,
  plan: Plan,
  body: (system: System, tracker: Tracker) => Promise<T>,
): Promise<T> {
  context.log(`starting ${factory.name}…`);
  const system = await factory.start();
  try {
    const tracker = new Tracker(plan);
    const started = performance.now();
    await system.connect(plan, tracker, context.log);
    context.log(
      `${system.label}: ${plan.connections} connections in ${plan.sessions} sessions ready in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    return await body(system, tracker);
  } finally {
    await system.disconnect().catch(() => undefined);
    await system.stop().catch((error: unknown) => context.log(`stopping ${factory.name} failed: ${String(error)}`));
  }
}

export interface Comparison {
  params: LoadParams & { connectionsPlanned: number };
  runs: PhaseResult[];
  ratios: Record<string, Record<string, number | null>>;
}

/**
 * Switchboard ÷ baseline, for each baseline: latency and CPU ratios (lower is better), throughput
 * (higher is better). CPU twice: the systems' own processes, and with the infrastructure each uses
 * (Switchboard's NATS and PostgreSQL, Socket.IO's Redis; plain ws has none, so its own is all).
 */
export function ratiosOf(runs: readonly PhaseResult[]): Record<string, Record<string, number | null>> {
  const ours = runs.find((run) => run.system === 'switchboard');
  const ratios: Record<string, Record<string, number | null>> = {};
  if (!ours) return ratios;
  const divide = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? null : round(a / b, 2));
  for (const run of runs) {
    if (run === ours) continue;
    ratios[run.system] = {
      deliveryP50: divide(ours.latency.delivery.p50, run.latency.delivery.p50),
      deliveryP99: divide(ours.latency.delivery.p99, run.latency.delivery.p99),
      ackP50: divide(ours.latency.ack.p50, run.latency.ack.p50),
      ackP99: divide(ours.latency.ack.p99, run.latency.ack.p99),
      deliveriesPerSec: divide(ours.throughput.deliveriesPerSec, run.throughput.deliveriesPerSec),
      cpuPerDelivery: divide(ours.cpu.perDeliveryUs, run.cpu.perDeliveryUs),
      // A baseline with no infrastructure (plain ws) has its own CPU as all of it; one whose
      // infrastructure could not be read has no figure, rather than its own processes' alone.
      cpuPerDeliveryAll: divide(ours.cpu.perDeliveryAllUs, run.cpu.usesInfrastructure ? run.cpu.perDeliveryAllUs : run.cpu.perDeliveryUs),
    };
  }
  return ratios;
}

/** The same load on Switchboard and (unless disabled) on both baselines, one after the other. */
export async function compare(context: BenchContext, name: string, defaults: LoadParams, baselines: boolean): Promise<Comparison> {
  const params = withOverrides(context, defaults);
  const plan = planOf(params);
  const runs: PhaseResult[] = [];
  for (const factory of factories(context, params.gateways, baselines)) {
    const result = await withSystem(context, factory, plan, (system, tracker) =>
      runPhase(system, plan, tracker, {
        label: `${name} ${factory.name}`,
        rate: params.rate,
        durationS: params.durationS,
        warmupS: params.warmupS,
        drainS: drainFor(system),
        log: context.log,
        progress: context.progress,
      }),
    );
    runs.push(result);
    for (const warning of phaseWarnings(result)) context.warnings.push(`${name} ${factory.name}: ${warning}`);
    const busy = result.machine.busy ?? 0;
    if (busy > MACHINE_BUSY_WARN)
      context.warnings.push(
        `${name} ${factory.name}: the machine's cores were ${Math.round(busy * 100)}% busy in the window: latencies include waits for a CPU`,
      );
    if (!isClean(result))
      context.warnings.push(`${name} ${factory.name}: losses, duplicates, errors or out-of-order deliveries (see the JSON)`);
  }
  return { params: { ...params, connectionsPlanned: plan.connections }, runs, ratios: ratiosOf(runs) };
}

export const QUICK: LoadParams = { connections: 20, sessions: 10, rate: 50, durationS: 3, warmupS: 1, gateways: 2 };
export const STEADY: LoadParams = { connections: 200, sessions: 100, rate: 200, durationS: 10, warmupS: 3, gateways: 2 };
export const FANOUT: LoadParams = { connections: 500, sessions: 1, rate: 20, durationS: 10, warmupS: 3, gateways: 2 };
/** The load: 1,000 msg/s into 2,000 sessions of 2–10 members. */
export const TARGET: LoadParams = {
  connections: 0,
  sessions: 2000,
  membersRange: [2, 10],
  rate: 1000,
  durationS: 30,
  warmupS: 5,
  gateways: 2,
};

// ---------------------------------------------------------------------------------------------
// ramp

export interface RampParams {
  connections: number;
  sessions: number;
  gateways: number;
  startRate: number;
  factor: number;
  stepS: number;
  warmupS: number;
  maxSteps: number;
  /** Time budget per system, seconds. */
  budgetS: number;
  /** A step is sustained while delivery p99 stays within this. */
  p99LimitMs: number;
  /** Past the sustained rate the ramp goes on (to find the most deliveries/s) until p99 passes this or the generator reaches GENERATOR_LIMIT. */
  saturationP99Ms: number;
}

export const RAMP: RampParams = {
  connections: 200,
  sessions: 100,
  gateways: 2,
  startRate: 200,
  factor: 1.5,
  stepS: 5,
  warmupS: 2,
  maxSteps: 14,
  budgetS: 240,
  p99LimitMs: 100,
  saturationP99Ms: 2_000,
};

export interface RampResult {
  system: string;
  label: string;
  steps: PhaseResult[];
  /** The highest rate with delivery p99 within the limit, nothing lost or refused, and deliveries keeping up. */
  sustainableRate: number;
  /** The ramp ended on the generator's limit or the step or time bound before any step missed the latency limit: the rate above is a lower bound. */
  sustainableLowerBound: boolean;
  /**
   * The most deliveries per second seen in any clean step (the saturation throughput): a step
   * with losses, errors, duplicates or out-of-order deliveries stays in the steps but not here.
   */
  saturatedDeliveriesPerSec: number;
  /** The ramp ended on the load generator's limit or the step bound, not the system's: the figure above is a lower bound. */
  lowerBound: boolean;
  stopReason: string;
}

/** Past this share of a core, the load generator is the bottleneck: the ramp stops there. */
export const GENERATOR_LIMIT = 0.85;

/** Why a step cannot go on (overload: losses, refusals, deliveries falling behind), or undefined. */
export function overloaded(step: PhaseResult, p99LimitMs: number): string | undefined {
  if (!isClean(step)) return 'losses, errors, duplicates or out-of-order deliveries';
  const expectedPerSec = step.deliveriesExpected / (step.durationS + step.warmupS);
  if (step.throughput.deliveriesPerSec < expectedPerSec * 0.9)
    return `deliveries ${step.throughput.deliveriesPerSec}/s behind the offered ${round(expectedPerSec, 0)}/s`;
  if (step.latency.delivery.p99 > p99LimitMs) return `delivery p99 ${step.latency.delivery.p99} ms > ${p99LimitMs} ms`;
  return undefined;
}

/** The steps of one system's ramp and what they showed. */
export type RampSteps = Pick<
  RampResult,
  'steps' | 'sustainableRate' | 'sustainableLowerBound' | 'saturatedDeliveriesPerSec' | 'lowerBound' | 'stopReason'
>;

/** The most deliveries per second of the clean steps (see isClean), 0 if none was. */
export function saturationOf(steps: readonly PhaseResult[]): number {
  return Math.max(0, ...steps.filter(isClean).map((step) => step.throughput.deliveriesPerSec));
}

/**
 * Raises the open-loop rate by `factor` per step. The sustainable rate is the highest step with
 * delivery p99 ≤ `p99LimitMs` and nothing lost (a step that misses only the latency limit is run
 * once more, as the machine is shared). Past it the ramp goes on while deliveries keep up, to
 * find the saturation throughput; it stops at the first loss or refusal, when deliveries fall
 * behind, when p99 passes `saturationP99Ms`, or at the step and time bounds. `runStep` runs one
 * step at the given rate.
 */
export async function rampSteps(
  params: RampParams,
  name: string,
  runStep: (rate: number) => Promise<PhaseResult>,
  log: (line: string) => void,
): Promise<RampSteps> {
  const steps: PhaseResult[] = [];
  const started = performance.now();
  let rate = params.startRate;
  let sustainableRate = 0;
  let sustaining = true;
  let retried = false;
  let stopReason = `${params.maxSteps} rates done`;
  let rates = 0;
  let lowerBound = true;
  // A step run again (see below) does not count towards maxSteps.
  while (rates < params.maxSteps) {
    if ((performance.now() - started) / 1000 + params.stepS + params.warmupS > params.budgetS) {
      stopReason = `time budget of ${params.budgetS} s`;
      break;
    }
    const step = await runStep(rate);
    steps.push(step);
    const hard = overloaded(step, params.saturationP99Ms);
    // A generator at its limit reads frames late itself: deliveries that fall behind or a p99
    // past the bound then say nothing of the system, whose figure is only a lower bound. Losses
    // and refusals do.
    const generatorBound = step.generator.cpuMean > GENERATOR_LIMIT;
    if (hard && !(generatorBound && isClean(step))) {
      stopReason = `at ${rate}/s: ${hard}`;
      lowerBound = false;
      break;
    }
    if (generatorBound) {
      // A step the system kept clean and within the latency limit even so, it sustained.
      if (sustaining && !overloaded(step, params.p99LimitMs)) sustainableRate = rate;
      stopReason = `at ${rate}/s: the load generator used ${Math.round(step.generator.cpuMean * 100)}% of a core`;
      break;
    }
    if (sustaining) {
      const soft = overloaded(step, params.p99LimitMs);
      if (soft && !retried) {
        retried = true;
        log(`ramp ${name}: ${soft} at ${rate}/s; running the step once more`);
        continue;
      }
      if (soft) {
        sustaining = false;
        lowerBound = true;
        log(`ramp ${name}: sustainable up to ${sustainableRate}/s (${soft} at ${rate}/s); going on to saturation`);
      } else sustainableRate = rate;
    }
    retried = false;
    rates++;
    rate = Math.round(rate * params.factor);
  }
  return {
    steps,
    sustainableRate,
    sustainableLowerBound: sustaining && lowerBound,
    saturatedDeliveriesPerSec: saturationOf(steps),
    lowerBound,
    stopReason,
  };
}

/** The ramp (see rampSteps) on Switchboard and (unless disabled) on both baselines, one after the other. */
export async function ramp(
  context: BenchContext,
  params: RampParams,
  baselines: boolean,
): Promise<{ params: RampParams; systems: RampResult[] }> {
  const overridden = { ...params, ...pick(context.overrides, ['connections', 'sessions', 'gateways']) };
  const ignored = (
    [
      ['rate', '--rate'],
      ['durationS', '--duration'],
      ['warmupS', '--warmup'],
    ] as const
  ).filter(([key]) => context.overrides[key] !== undefined);
  if (ignored.length > 0)
    context.warnings.push(`ramp: ${ignored.map(([, flag]) => flag).join(', ')} not applied (its steps set their own rate and length)`);
  const plan = makePlan({ sessions: overridden.sessions, connections: overridden.connections });
  const systems: RampResult[] = [];
  for (const factory of factories(context, overridden.gateways, baselines)) {
    const result = await withSystem(context, factory, plan, async (system, tracker) => {
      const run = await rampSteps(
        overridden,
        factory.name,
        (rate) =>
          runPhase(system, plan, tracker, {
            label: `ramp ${factory.name} ${rate}/s`,
            rate,
            durationS: overridden.stepS,
            warmupS: overridden.warmupS,
            drainS: drainFor(system),
            log: context.log,
            progress: context.progress,
          }),
        context.log,
      );
      for (const step of run.steps)
        for (const warning of phaseWarnings(step)) context.warnings.push(`ramp ${factory.name} at ${step.targetRate}/s: ${warning}`);
      return { system: system.name, label: system.label, ...run };
    });
    context.log(
      `ramp ${factory.name}: sustainable ${result.sustainableLowerBound ? '≥ ' : ''}${result.sustainableRate}/s; most deliveries ${result.saturatedDeliveriesPerSec}/s; stopped ${result.stopReason}`,
    );
    systems.push(result);
  }
  return { params: overridden, systems };
}

function pick<T extends object, K extends keyof T>(object: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const picked: Partial<Pick<T, K>> = {};
  for (const key of keys) if (object[key] !== undefined) picked[key] = object[key];
  return picked;
}

// ---------------------------------------------------------------------------------------------
// idle memory

/** One reading of the memory of the processes holding the sockets, after the last join. */
export interface IdleReading {
  idleMs: number;
  bytesPerConnection: number;
  heapBytesPerConnection: number;
  /** Full (mark-compact) collections since the last join; undefined where a process reports none of its collections. */
  fullCollections: number | undefined;
}

export interface IdleMemoryResult {
  system: string;
  label: string;
  connections: number;
  sessions: number;
  /** How long after the last join the judged reading was taken (IDLE_SETTLE_MS; 60 s before the JSON's version 2). */
  settleMs: number;
  /** Full collections the processes had run when the reading before connecting was taken (see IDLE_BEFORE_MAX_WAIT_MS). */
  fullCollectionsBeforeConnecting: number | undefined;
  /** Connections the bench saw closed before the last reading (a run with any is not judged). */
  closedWhileIdle: number;
  /** Resident memory of the processes holding the sockets (the gateway; the baseline's servers). */
  rssBeforeBytes: number;
  /** At the judged reading, settleMs after the last join. */
  rssAfterBytes: number;
  bytesPerConnection: number;
  /** 5 s after the last connection joined, with the connection burst's garbage mostly still there. */
  bytesPerConnectionAt5s: number;
  /** At IDLE_EARLY_READ_MS: the reading judged before the JSON's version 2. */
  bytesPerConnectionAt60s: number;
  heapBeforeBytes: number;
  heapAfterBytes: number;
  heapBytesPerConnection: number;
  heapBytesPerConnectionAt5s: number;
  heapBytesPerConnectionAt60s: number;
  /** Memory outside the V8 heap (buffers) per connection. */
  externalBytesPerConnection: number;
  /**
   * The reading by which the last full collection since the last join had happened (it happened in
   * the interval before it); undefined when there was none, or the processes do not report them.
   */
  lastFullCollectionMs: number | undefined;
  readings: IdleReading[];
  setupSeconds: number;
}

/**
 * How long connections stay idle before memory is read: past the point where V8 gives back the
 * heap grown by the burst of connecting (token checks, joins, replays). Its memory reducer runs
 * that collection when, at a check every 8 s, the allocation rate looks low; V8 counts a rate of
 * zero as not low, and an idle gateway allocates nothing that lives long enough to reach the old
 * generation, so the collection usually waits for the reducer's watchdog: 100 s after the last
 * full collection, which can fall a few seconds after the last join (V8's memory-reducer.cc,
 * `kWatchdogDelayMs`). Read at 60 s, as this scenario once was, whether something had brought the
 * collection forward decided the figure: 5.6–16.1 KiB per connection on the same code.
 */
export const IDLE_SETTLE_MS = 135_000;
/** The earlier reading, still reported: what a gateway holds in the minute after a burst of connections. */
export const IDLE_EARLY_READ_MS = 60_000;
/**
 * How long a system idles after it starts, at least, before the reading the connections' memory
 * is counted from. A gateway's RSS falls by 7–14 MiB 15–25 s after its start, as the same reducer
 * frees what starting left: read before it, that fall came off the connections' growth, 0.7–1.4
 * KiB per connection at 10,000. So the reading waits until every process holding sockets has run
 * a full collection, until IDLE_BEFORE_MAX_WAIT_MS (a small heap, as plain ws's, may have none).
 */
export const IDLE_BEFORE_SETTLE_MS = 20_000;
export const IDLE_BEFORE_MAX_WAIT_MS = 60_000;

/** When idle memory is read after the last join: every 15 s from 5 s, and at IDLE_EARLY_READ_MS. */
export function idleReadingTimes(): number[] {
  const times = new Set([IDLE_EARLY_READ_MS, IDLE_SETTLE_MS]);
  for (let at = 5_000 + 15_000; at < IDLE_SETTLE_MS; at += 15_000) times.add(at);
  return [...times].sort((x, y) => x - y);
}

/**
 * A full collection this late is past the tail of the burst's own: the memory reducer's, most
 * likely. Without one after it, the watchdog's may still be to come (100 s after the last one).
 */
export const IDLE_LATE_COLLECTION_MS = 35_000;

/** The reading by which the last full collection had happened, or undefined when none did (readings that did not tell are passed over). */
export function lastFullCollectionMs(readings: readonly IdleReading[]): number | undefined {
  let last: number | undefined;
  let count = 0;
  for (const reading of readings) {
    if (reading.fullCollections === undefined) continue;
    if (reading.fullCollections > count) last = reading.idleMs;
    count = reading.fullCollections;
  }
  return last;
}

const kibText = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

export function openFileLimit(): number {
  try {
    const out = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
    return out === 'unlimited' ? Number.POSITIVE_INFINITY : Number(out);
  } catch {
    return 1024;
  }
}

export async function idleMemory(
  context: BenchContext,
  wanted: number,
  baselines: boolean,
): Promise<{ connections: number; ulimit: number; systems: IdleMemoryResult[] }> {
  const ulimit = openFileLimit();
  // The bench holds one descriptor per socket, the gateway one per socket, plus a margin for everything else.
  // `--idle-connections` sets it; `--connections`, which sets the load scenarios', does not.
  let connections = wanted;
  if (connections + 1_000 > ulimit) {
    const scaled = Math.max(100, Math.floor((ulimit - 1_000) / 2) * 2);
    context.warnings.push(`idle-memory: ulimit -n is ${ulimit}: ${connections} connections scaled down to ${scaled}`);
    context.log(`warning: ulimit -n is ${ulimit}; idle-memory uses ${scaled} connections instead of ${connections}`);
    connections = scaled;
  }
  const plan = makePlan({ sessions: Math.max(1, Math.floor(connections / 2)), connections });
  const factoryList = [switchboardFactory(context, 1), ...(baselines ? [plainWsFactory, socketIoFactory] : [])];
  const systems: IdleMemoryResult[] = [];
  for (const factory of factoryList) {
    context.log(`idle-memory ${factory.name}: ${connections} connections…`);
    const system = await factory.start();
    try {
      const holders = system.processes.filter(
        (process) => system.name !== 'switchboard' || process.name.startsWith('gateway') || process.name.startsWith('target'),
      );
      /** The holders' memory, and each one's full collections (undefined unless every one reports them), from one scrape of each. */
      const measure = async () => {
        const held = { rss: 0, heap: 0, external: 0, collections: holders.length > 0 ? ([] as number[] | undefined) : undefined };
        for (const process of holders) {
          const scraped = process.metricsUrl ? await scrape(process.metricsUrl) : undefined;
          held.rss += metric(scraped, 'process_resident_memory_bytes');
          held.heap += metric(scraped, 'nodejs_heap_size_used_bytes');
          held.external += metric(scraped, 'nodejs_external_memory_bytes');
          held.collections = scraped && reportsGc(scraped) ? held.collections?.concat(fullCollectionsOf(scraped)) : undefined;
        }
        return held;
      };
      const total = (counts: number[] | undefined) => counts?.reduce((sum, count) => sum + count, 0);
      await sleep(IDLE_BEFORE_SETTLE_MS);
      let before = await measure();
      for (
        let waited = IDLE_BEFORE_SETTLE_MS;
        waited < IDLE_BEFORE_MAX_WAIT_MS && !before.collections?.every((count) => count > 0);
        waited += 1_000
      ) {
        await sleep(1_000);
        before = await measure();
      }
      const collectionsBefore = total(before.collections);
      // RSS falls as the collection ends, not at once.
      if (collectionsBefore) {
        await sleep(2_000);
        before = await measure();
      }
      const tracker = new Tracker(plan);
      const started = performance.now();
      await system.connect(plan, tracker, context.log);
      const joinedAt = performance.now();
      const setupSeconds = round((joinedAt - started) / 1000, 1);
      const perConnection = (bytes: number) => Math.round(bytes / connections);
      const collectionsAtStart = total((await measure()).collections);
      const readings: IdleReading[] = [];
      let after = before;
      for (const idleMs of [5_000, ...idleReadingTimes()]) {
        // Each reading at its time from the last join, however long the scrapes before it took.
        await sleep(Math.max(0, joinedAt + idleMs - performance.now()));
        after = await measure();
        const collections = total(after.collections);
        const reading: IdleReading = {
          idleMs,
          bytesPerConnection: perConnection(after.rss - before.rss),
          heapBytesPerConnection: perConnection(after.heap - before.heap),
          fullCollections: collections === undefined || collectionsAtStart === undefined ? undefined : collections - collectionsAtStart,
        };
        readings.push(reading);
        context.log(
          `idle-memory ${factory.name}: ${idleMs / 1000} s idle, ${kibText(reading.bytesPerConnection)} RSS and ${kibText(reading.heapBytesPerConnection)} heap per connection, ${reading.fullCollections ?? 'unknown'} full collections since the last join`,
        );
      }
      const at = (idleMs: number) => readings.find((reading) => reading.idleMs === idleMs);
      const lastCollectionMs = lastFullCollectionMs(readings);
      if (
        readings.some((reading) => reading.fullCollections !== undefined) &&
        (lastCollectionMs === undefined || lastCollectionMs <= IDLE_LATE_COLLECTION_MS)
      )
        context.warnings.push(
          `idle-memory ${factory.name}: no full collection after ${IDLE_LATE_COLLECTION_MS / 1000} s idle: V8 may not yet have given back what it kept from the burst of connecting`,
        );
      if (tracker.counters.closed > 0)
        context.warnings.push(`idle-memory ${factory.name}: ${tracker.counters.closed} connections closed while idle: not judged`);
      const result: IdleMemoryResult = {
        system: system.name,
        label: system.label,
        connections,
        sessions: plan.sessions,
        settleMs: IDLE_SETTLE_MS,
        fullCollectionsBeforeConnecting: collectionsBefore,
        closedWhileIdle: tracker.counters.closed,
        rssBeforeBytes: before.rss,
        rssAfterBytes: after.rss,
        bytesPerConnection: perConnection(after.rss - before.rss),
        bytesPerConnectionAt5s: at(5_000)?.bytesPerConnection ?? 0,
        bytesPerConnectionAt60s: at(IDLE_EARLY_READ_MS)?.bytesPerConnection ?? 0,
        heapBeforeBytes: before.heap,
        heapAfterBytes: after.heap,
        heapBytesPerConnection: perConnection(after.heap - before.heap),
        heapBytesPerConnectionAt5s: at(5_000)?.heapBytesPerConnection ?? 0,
        heapBytesPerConnectionAt60s: at(IDLE_EARLY_READ_MS)?.heapBytesPerConnection ?? 0,
        externalBytesPerConnection: perConnection(after.external - before.external),
        lastFullCollectionMs: lastCollectionMs,
        readings,
        setupSeconds,
      };
      context.log(
        `idle-memory ${factory.name}: ${kibText(result.bytesPerConnection)} RSS, ${kibText(result.heapBytesPerConnection)} heap per connection after ${IDLE_SETTLE_MS / 1000} s idle (${kibText(result.bytesPerConnectionAt5s)} RSS at 5 s, ${kibText(result.bytesPerConnectionAt60s)} at ${IDLE_EARLY_READ_MS / 1000} s)`,
      );
      systems.push(result);
    } finally {
      await system.disconnect().catch(() => undefined);
      await system.stop().catch(() => undefined);
    }
  }
  return { connections, ulimit, systems };
}

// ---------------------------------------------------------------------------------------------
// scale-out

export interface GatewayNatsFigures {
  gateway: number;
  hostedSessions: number;
  /** `confirmed.<id>` subscriptions of the gateway's NATS connection. */
  confirmedSubscriptions: number;
  /** The subscriptions are exactly the sessions with a member on this gateway. */
  subscriptionsMatchHosted: boolean;
  /**
   * How its NATS connection was found: by the port the gateway connects from, or, without /proc,
   * by its subscriptions (ambiguous when two gateways host the same sessions).
   */
  connectionMatchedBy: 'port' | 'subscriptions' | 'none';
  /** Messages NATS delivered to the gateway's connection during the phase. */
  natsMessagesIn: number;
  /** Confirmed events of the sessions it hosts (messages sent to them during the phase). */
  expectedConfirmedEvents: number;
  /** PubAcks of the sends made through this gateway. */
  expectedPubAcks: number;
  /** natsMessagesIn − expected events − PubAcks: other traffic (0 when it receives nothing else). */
  otherMessages: number;
  /** Share of all confirmed events this gateway received. */
  shareOfAllEvents: number;
  newMessageFramesOut: number;
  sessionsGauge: number;
}

/** The scale-out scenario's load, on 1, 2 and 4 gateways in turn. */
export const SCALE_OUT: LoadParams = { connections: 400, sessions: 200, rate: 400, durationS: 10, warmupS: 3, gateways: 1 };

export interface ScaleOutStep {
  gateways: number;
  result: PhaseResult;
  nats: GatewayNatsFigures[] | undefined;
}

export async function scaleOut(
  context: BenchContext,
  defaults: LoadParams,
  steps: readonly number[],
): Promise<{ params: LoadParams; privateNats: boolean; steps: ScaleOutStep[]; cpuGrowth: number | null; cpuGrowthAll: number | null }> {
  if (context.target) throw new Error('scale-out starts its own gateways; it cannot run against --target');
  const params = withOverrides(context, defaults);
  const plan = planOf(params);
  const results: ScaleOutStep[] = [];
  let privateNats = false;
  for (const gateways of steps) {
    const nats = await startPrivateNats().catch((error: unknown) => {
      context.warnings.push(`scale-out: the monitored NATS did not start (${String(error).split('\n')[0]}); the shared one was used`);
      return null;
    });
    privateNats = Boolean(nats);
    if (nats === undefined)
      context.warnings.push('scale-out: no nats-server binary for a monitored NATS; per-gateway NATS figures are missing');
    try {
      const { system } = await startLocalSwitchboard({
        gateways,
        ...(nats ? { natsUrl: nats.url, natsPids: () => (nats.pid ? [nats.pid] : []) } : {}),
      });
      const factory: SystemFactory = { name: 'switchboard', start: async () => system };
      const step = await withSystem(context, factory, plan, async (sut, tracker) => {
        const before = nats ? await connz(nats.monitorUrl) : [];
        const first = tracker.count;
        const result = await runPhase(sut, plan, tracker, {
          label: `scale-out ${gateways} gw`,
          rate: params.rate,
          durationS: params.durationS,
          warmupS: params.warmupS,
          drainS: 15,
          log: context.log,
          progress: context.progress,
        });
        const after = nats ? await connz(nats.monitorUrl) : [];
        const figures = nats
          ? await gatewayFigures(sut, plan, tracker, first, gateways, before, after, Number(new URL(nats.url).port))
          : undefined;
        return { gateways, result, nats: figures };
      });
      results.push(step);
      for (const warning of phaseWarnings(step.result)) context.warnings.push(`scale-out ${gateways}: ${warning}`);
      for (const figures of step.nats ?? [])
        if (figures.connectionMatchedBy !== 'port')
          context.warnings.push(
            `scale-out ${gateways}: gateway ${figures.gateway}'s NATS connection ${figures.connectionMatchedBy === 'none' ? 'was not found' : 'was matched by its subscriptions only (no /proc): gateways hosting the same sessions may share figures'}`,
          );
    } finally {
      await nats?.stop();
    }
  }
  const perDelivery = (step: ScaleOutStep | undefined, all: boolean) =>
    all ? step?.result.cpu.perDeliveryAllUs : step?.result.cpu.perDeliveryUs;
  const growth = (all: boolean) => {
    const a = perDelivery(results[0], all);
    const b = perDelivery(results[results.length - 1], all);
    return a && b ? round(b / a, 2) : null;
  };
  return { params, privateNats, steps: results, cpuGrowth: growth(false), cpuGrowthAll: growth(true) };
}

async function gatewayFigures(
  system: System,
  plan: Plan,
  tracker: Tracker,
  first: number,
  gateways: number,
  before: NatsConnection[],
  after: NatsConnection[],
  natsPort: number,
): Promise<GatewayNatsFigures[]> {
  const sessionKey = system.sessionKey ?? ((session: number) => String(session));
  // Sessions hosted by each gateway, and messages sent per session and per gateway during the phase.
  const hosted = Array.from({ length: gateways }, () => new Set<string>());
  for (let connection = 0; connection < plan.connections; connection++)
    hosted[connection % gateways]?.add(sessionKey(plan.sessionOf[connection] ?? 0));
  const perSession = new Map<string, number>();
  const sendsPerGateway = new Array<number>(gateways).fill(0);
  let allEvents = 0;
  for (let g = first; g < tracker.count; g++) {
    const key = sessionKey(tracker.sessionOf(g));
    perSession.set(key, (perSession.get(key) ?? 0) + 1);
    const gateway = tracker.senderOf(g) % gateways;
    sendsPerGateway[gateway] = (sendsPerGateway[gateway] ?? 0) + 1;
    allEvents++;
  }
  const metrics = await Promise.all(
    system.processes
      .filter((process) => process.name.startsWith('gateway'))
      .map((process) => (process.metricsUrl ? scrape(process.metricsUrl) : undefined)),
  );
  const gatewayConnections = after.filter(
    (connection) => connection.name?.endsWith('-gateway') || connection.name === 'switchboard-gateway',
  );
  const figures: GatewayNatsFigures[] = [];
  for (let gateway = 0; gateway < gateways; gateway++) {
    const sessions = hosted[gateway] ?? new Set<string>();
    const confirmedOf = (connection: NatsConnection) =>
      (connection.subscriptions_list ?? [])
        .filter((subject) => subject.includes('.confirmed.'))
        .map((subject) => subject.slice(subject.lastIndexOf('.') + 1));
    // Its own connection, by the port it connects from: with two members per session, gateways
    // 0 and 1 (and 2 and 3) of four host the same sessions, so their subscriptions cannot tell
    // them apart.
    const pid = system.processes.find((process) => process.name === `gateway-${gateway}`)?.pid;
    const ports = pid === undefined ? [] : localPortsTo(pid, natsPort);
    const byPort = ports.length > 0;
    const connection = byPort
      ? gatewayConnections.find((candidate) => candidate.port !== undefined && ports.includes(candidate.port))
      : gatewayConnections.find((candidate) => {
          const subscribed = confirmedOf(candidate);
          return subscribed.length > 0 && subscribed.every((id) => sessions.has(id));
        });
    const connectionMatchedBy = connection === undefined ? 'none' : byPort ? 'port' : 'subscriptions';
    const subscribed = connection ? confirmedOf(connection) : [];
    const previous = connection ? before.find((candidate) => candidate.cid === connection.cid) : undefined;
    const natsMessagesIn = connection ? connection.out_msgs - (previous?.out_msgs ?? 0) : 0;
    let expectedConfirmedEvents = 0;
    for (const session of sessions) expectedConfirmedEvents += perSession.get(session) ?? 0;
    const expectedPubAcks = sendsPerGateway[gateway] ?? 0;
    const scraped = metrics[gateway];
    figures.push({
      gateway,
      hostedSessions: sessions.size,
      confirmedSubscriptions: subscribed.length,
      subscriptionsMatchHosted: subscribed.length === sessions.size && subscribed.every((id) => sessions.has(id)),
      connectionMatchedBy,
      natsMessagesIn,
      expectedConfirmedEvents,
      expectedPubAcks,
      otherMessages: natsMessagesIn - expectedConfirmedEvents - expectedPubAcks,
      shareOfAllEvents: allEvents === 0 ? 0 : round(expectedConfirmedEvents / allEvents, 3),
      newMessageFramesOut: metric(scraped, 'switchboard_gateway_frames_out_total', { type: 'new_message' }),
      sessionsGauge: metric(scraped, 'switchboard_gateway_sessions'),
    });
  }
  return figures;
}

// ---------------------------------------------------------------------------------------------
// persistence

export interface PersistenceParams {
  sessions: number;
  /** Seconds of publishing while persistence stores. */
  durationS: number;
  /** Publishes in flight (awaiting their PubAck). */
  inFlight: number;
  /** Messages published while persistence is stopped, then stored from the backlog. */
  backlog: number;
  contentChars: number;
}

export const PERSISTENCE: PersistenceParams = { sessions: 2000, durationS: 20, inFlight: 1000, backlog: 100_000, contentChars: 100 };

export interface PersistenceResult {
  params: PersistenceParams;
  durability: Record<string, string>;
  live: {
    published: number;
    publishPerSec: number;
    stored: number;
    /** Stored messages per second over the publishing window, after its first 2 s. */
    sustainedStoredPerSec: number;
    perSecond: { t: number; published: number; stored: number }[];
    drainSeconds: number;
    duplicates: number;
    meanBatchSize: number;
    meanCommitMs: number;
    persistenceCpuSeconds: number;
    cpuPerMessageUs: number;
  };
  /** The backlog's consumption without persistence: a work-queue stream of as many subjects, consumed and acked by the bench. */
  natsOnly: { subjects: number; messages: number; consumedPerSec: number };
  backlog: {
    messages: number;
    publishPerSec: number;
    /** Stored per second while draining the backlog, between 5% and 95% of it. */
    storedPerSec: number;
    /** Stored by the restarted persistence when the drain ended: `messages` unless it ran out of time. */
    stored: number;
    seconds: number;
    duplicates: number;
    meanBatchSize: number;
    meanCommitMs: number;
    persistenceCpuSeconds: number;
    cpuPerMessageUs: number;
  };
}

async function publishMany(
  nc: NatsClient,
  subjects: ReturnType<typeof createSubjects>,
  sessionIds: readonly number[],
  options: { inFlight: number; untilMs?: number; count?: number; padding: string; offset: number; counter?: Int32Array },
): Promise<number> {
  const js = nc.jetstream();
  const encoder = new TextEncoder();
  let next = options.offset;
  const last = options.count === undefined ? Number.POSITIVE_INFINITY : options.offset + options.count;
  let published = 0;
  const worker = async () => {
    for (;;) {
      if (options.untilMs !== undefined && performance.now() >= options.untilMs) return;
      if (next >= last) return;
      const n = next++;
      const sessionId = sessionIds[n % sessionIds.length] ?? 0;
      const clientMsgId = `p${n}`;
      const body = {
        session_id: sessionId,
        client_msg_id: clientMsgId,
        sender_id: 1,
        sender_role: 'user',
        content: `bench:${clientMsgId}:${options.padding}`,
        received_at: new Date().toISOString(),
      };
      await js.publish(subjects.inbound(sessionId), encoder.encode(JSON.stringify(body)), {
        msgID: `${sessionId}:${clientMsgId}`,
        timeout: 30_000,
      });
      published++;
      if (options.counter) Atomics.add(options.counter, 0, 1);
    }
  };
  await Promise.all(Array.from({ length: options.inFlight }, worker));
  return published;
}

/**
 * The persistence service alone: messages published straight into the inbound stream (JetStream
 * publish with Nats-Msg-Id, many in flight), stored by one persistence process; the rate is read
 * from its `switchboard_persistence_messages_total` over time.
 */
export async function persistenceScenario(context: BenchContext, params: PersistenceParams): Promise<PersistenceResult> {
  if (context.target) throw new Error('the persistence scenario starts its own persistence; it cannot run against --target');
  const { startStack, TEST_NATS_URL } = await import('@switchboard/testing');
  const stack = await startStack({
    gateways: 0,
    env: { LOG_LEVEL: 'warn' },
    persistenceEnv: { INBOUND_ACK_WAIT: '10s', ...profileEnv('persistence') },
  });
  for (const service of [stack.auth, ...stack.persistence]) trackChild(service.child);
  // Stopped on Ctrl-C too, like every other scenario's stack: its database and inbound stream are dropped.
  const stopStack = onCleanup(() => stack.stop());
  // The stack's own NATS: NATS_URL may name a deployment's, which the stack never uses.
  const natsUrl = stack.env.NATS_URL ?? TEST_NATS_URL;
  const subjects = createSubjects(stack.prefix);
  const padding = 'x'.repeat(Math.max(0, params.contentChars - 20));
  let nc: NatsClient | undefined;
  try {
    nc = await connect({ servers: natsUrl, name: 'switchboard-bench' });
    const durability = { ...(await durabilitySettings(stack.database.url)), ...jetStreamDurability(nc.info?.version ?? '') };
    context.log(`persistence: creating ${params.sessions} sessions…`);
    const sessionIds: number[] = [];
    for (let i = 0; i < params.sessions; i++) {
      const reply = await nc.request(
        subjects.persistence('sessions.create'),
        JSON.stringify({ customer_id: 1 + (i % 50), subject: `bench ${i}` }),
        {
          timeout: 10_000,
        },
      );
      sessionIds.push((JSON.parse(new TextDecoder().decode(reply.data)) as { session: { id: number } }).session.id);
    }
    const metricsUrl = () => {
      const service = stack.persistence[stack.persistence.length - 1];
      if (!service) throw new Error('no persistence');
      return service.opsUrl('/metrics');
    };
    const persistenceMetrics = () => scrape(metricsUrl());
    /** The count of messages stored, read here and by the sampler. */
    const storedCount = { metric: 'switchboard_persistence_messages_total', labels: { outcome: 'stored' } };
    const batchFigures = async (before: Awaited<ReturnType<typeof persistenceMetrics>> | undefined) => {
      const after = await persistenceMetrics();
      const diff = (name: string) => metric(after, name) - metric(before, name);
      const batches = diff('switchboard_persistence_batch_size_count');
      const stored = metric(after, storedCount.metric, storedCount.labels) - metric(before, storedCount.metric, storedCount.labels);
      return {
        persistenceCpuSeconds: round(diff('process_cpu_seconds_total'), 2),
        cpuPerMessageUs: stored ? round((diff('process_cpu_seconds_total') * 1e6) / stored, 1) : 0,
        meanBatchSize: batches ? round(diff('switchboard_persistence_batch_size_sum') / batches, 1) : 0,
        meanCommitMs: batches ? round((diff('switchboard_persistence_commit_seconds_sum') / batches) * 1000, 2) : 0,
        duplicates:
          metric(after, 'switchboard_persistence_messages_total', { outcome: 'duplicate' }) -
          metric(before, 'switchboard_persistence_messages_total', { outcome: 'duplicate' }),
      };
    };

    // 1. Live: publish for durationS while persistence stores.
    context.log(`persistence: publishing for ${params.durationS} s with ${params.inFlight} in flight…`);
    const start0 = await persistenceMetrics();
    const storedOf = (scraped: Awaited<ReturnType<typeof persistenceMetrics>>) => metric(scraped, storedCount.metric, storedCount.labels);
    const storedBase = storedOf(start0);
    const started = performance.now();
    const startedAtMs = monotonicMs();
    const untilMs = started + params.durationS * 1000;
    let published = 0;
    const counting = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
    // On a thread of its own: this one is busy with the publishes.
    const sampler = startSampler(
      {
        url: metricsUrl(),
        ...storedCount,
        base: storedBase,
        startedAtMs,
        intervalMs: 1000,
        published: counting,
      },
      (sample) => {
        if (context.progress) context.log(`[persistence] ${sample.t.toFixed(0)}s published ${sample.published} stored ${sample.stored}`);
      },
    );
    const publishing = publishMany(nc, subjects, sessionIds, {
      inFlight: params.inFlight,
      untilMs,
      padding,
      offset: 0,
      counter: counting,
    }).then((count) => {
      published = count;
    });
    if (isProfiling()) signalProfilers(stack.persistence);
    // A failed run stops its sampler too, rather than leave it reading until the process ends.
    await publishing.catch(async (error: unknown) => {
      await sampler.stop().catch(() => undefined);
      throw error;
    });
    const publishSeconds = (performance.now() - started) / 1000;
    // Wait for the rest to be stored.
    const drainStart = performance.now();
    let stored = 0;
    while (performance.now() - drainStart < 120_000) {
      stored = storedOf(await persistenceMetrics()) - storedBase;
      if (stored >= published) break;
      await sleep(200);
    }
    const drainSeconds = round((performance.now() - drainStart) / 1000, 1);
    if (stored < published)
      context.warnings.push(
        `persistence: live, ${published - stored} of ${published} published were not stored within 120 s of the last publish`,
      );
    const perSecond = (await sampler.stop()).map((sample) => ({ ...sample, t: round(sample.t, 2) }));
    const window = perSecond.filter((sample) => sample.t >= 2 && sample.t <= params.durationS);
    const firstSample = window[0];
    const lastSample = window[window.length - 1];
    const sustainedStoredPerSec =
      firstSample && lastSample && lastSample.t > firstSample.t
        ? round((lastSample.stored - firstSample.stored) / (lastSample.t - firstSample.t), 0)
        : 0;
    if (window.length < 2)
      context.warnings.push(
        `persistence: ${window.length} reading(s) of the stored count within the live window, too few for a rate: its 0 stored/s means no figure`,
      );
    const liveBatches = await batchFigures(start0);
    context.log(`persistence live: ${round(published / publishSeconds, 0)} published/s, ${sustainedStoredPerSec} stored/s sustained`);

    // 2. Backlog: stop persistence, fill the stream, start persistence and time the drain.
    context.log(`persistence: stopping persistence, publishing a backlog of ${params.backlog}…`);
    for (const service of stack.persistence.splice(0)) await service.stop();
    const backlogStart = performance.now();
    const backlogPublished = await publishMany(nc, subjects, sessionIds, {
      inFlight: params.inFlight,
      count: params.backlog,
      padding,
      offset: 10_000_000,
    });
    const backlogPublishPerSec = round(backlogPublished / ((performance.now() - backlogStart) / 1000), 0);
    const restarted = await stack.startPersistence();
    trackChild(restarted.child);
    if (isProfiling()) signalProfilers([restarted]);
    // The new process's counters start at 0, and it may have stored some already: count from its start.
    const samples: { t: number; stored: number; cpu: number }[] = [];
    const drainStarted = performance.now();
    for (;;) {
      const asked = performance.now();
      const scraped = await persistenceMetrics();
      const now = performance.now();
      const storedNow = storedOf(scraped);
      samples.push({ t: ((asked + now) / 2 - drainStarted) / 1000, stored: storedNow, cpu: metric(scraped, 'process_cpu_seconds_total') });
      if (storedNow >= backlogPublished || now - drainStarted > 180_000) break;
      await sleep(100);
    }
    const backlogStored = samples[samples.length - 1]?.stored ?? 0;
    if (backlogStored < backlogPublished)
      context.warnings.push(`persistence: the backlog's drain stopped after 180 s with ${backlogStored} of ${backlogPublished} stored`);
    const at = (fraction: number) => samples.find((sample) => sample.stored >= backlogPublished * fraction);
    const low = at(0.05);
    const high = at(0.95);
    const backlogBatches = await batchFigures(undefined);
    if (low && high && high.stored > low.stored) {
      backlogBatches.persistenceCpuSeconds = round(high.cpu - low.cpu, 2);
      backlogBatches.cpuPerMessageUs = round(((high.cpu - low.cpu) * 1e6) / (high.stored - low.stored), 1);
    }
    const last = samples[samples.length - 1];
    context.log('persistence: the same backlog through NATS alone (consume and ack, no database)…');
    // Over as many subjects as the inbound stream holds: its partitions.
    const natsOnly = await natsCeiling(
      nc,
      stack.prefix,
      Math.min(sessionIds.length, INBOUND_PARTITIONS),
      backlogPublished,
      params.inFlight,
      padding,
    );
    if (natsOnly.messages < backlogPublished)
      context.warnings.push(
        `persistence: NATS alone consumed ${natsOnly.messages} of ${backlogPublished} within 120 s: its rate is over a part of the backlog`,
      );
    const result: PersistenceResult = {
      params,
      durability,
      live: {
        published,
        publishPerSec: round(published / publishSeconds, 0),
        stored,
        sustainedStoredPerSec,
        perSecond,
        drainSeconds,
        ...liveBatches,
      },
      backlog: {
        messages: backlogPublished,
        publishPerSec: backlogPublishPerSec,
        storedPerSec: low && high && high.t > low.t ? round((high.stored - low.stored) / (high.t - low.t), 0) : 0,
        stored: last?.stored ?? 0,
        seconds: round(last?.t ?? 0, 1),
        ...backlogBatches,
      },
      natsOnly,
    };
    context.log(`persistence backlog: ${result.backlog.storedPerSec} stored/s (${backlogPublished} in ${result.backlog.seconds} s)`);
    return result;
  } finally {
    await nc?.close().catch(() => undefined);
    await stopStack();
  }
}

/**
 * The ceiling NATS sets on its own: the same number of messages over the same number of subjects
 * in a work-queue stream with file storage, consumed with a pull consumer and acked one by one,
 * with nothing stored anywhere else.
 */
async function natsCeiling(
  nc: NatsClient,
  prefix: string,
  subjectCount: number,
  messages: number,
  inFlight: number,
  padding: string,
): Promise<{ subjects: number; messages: number; consumedPerSec: number }> {
  const jsm = await nc.jetstreamManager();
  const js = nc.jetstream();
  const name = `${prefix.toUpperCase()}_NATS_ONLY`;
  const subject = (n: number) => `${prefix}-nats-only.inbound.${n % subjectCount}`;
  await jsm.streams.add({
    name,
    subjects: [`${prefix}-nats-only.inbound.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
  });
  const deleteStream = onCleanup(async () => {
    await jsm.streams.delete(name).catch(() => undefined);
  });
  try {
    await jsm.consumers.add(name, { durable_name: 'ceiling', ack_policy: AckPolicy.Explicit, max_ack_pending: 20_000 });
    const payload = new TextEncoder().encode(`{"content":"bench:${padding}"}`);
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < messages) {
          const n = next++;
          await js.publish(subject(n), payload, { msgID: `c${n}`, timeout: 30_000 });
        }
      }),
    );
    const consumer = await js.consumers.get(name, 'ceiling');
    const iterator = await consumer.consume({ max_messages: 1_000 });
    const started = performance.now();
    const deadline = setTimeout(() => void iterator.stop(), 120_000);
    let received = 0;
    for await (const msg of iterator) {
      msg.ack();
      if (++received >= messages) break;
    }
    clearTimeout(deadline);
    return { subjects: subjectCount, messages: received, consumedPerSec: round(received / ((performance.now() - started) / 1000), 0) };
  } finally {
    await deleteStream();
  }
}

async function durabilitySettings(databaseUrl: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const settings: Record<string, string> = {};
    for (const name of ['synchronous_commit', 'fsync', 'wal_sync_method', 'full_page_writes']) {
      const { rows } = await client.query<Record<string, string>>(`show ${name}`);
      settings[name] = rows[0]?.[name] ?? '';
    }
    return settings;
  } finally {
    await client.end();
  }
}

/**
 * What a JetStream acknowledgement means on the server measured. Production's configuration
 * (`deploy/nats/nats.conf`) sets `sync_interval: always`, an fsync before each acknowledgement;
 * NATS before 2.10 has no such setting and flushes its files every two minutes, so a run on it
 * leaves that cost out of every Switchboard figure.
 */
export function jetStreamDurability(version: string): Record<string, string> {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  const syncable = major > 2 || (major === 2 && minor >= 10);
  return {
    jetstream_storage: 'file',
    nats_server: version || 'unknown',
    jetstream_sync: syncable
      ? "the server's sync_interval (not readable without its monitoring port)"
      : 'flushed every 2 min, acknowledged before: this NATS has no sync_interval (2.10+)',
  };
}

/** Gateway, persistence and auth RSS after a run, for the record. */
export { rssOf };
