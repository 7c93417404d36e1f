import { setTimeout as sleep } from 'node:timers/promises';
import { clientMsgIdOf, contentOf, type System } from './driver.js';
import { type LatencySummary, summarize } from './histogram.js';
import { GeneratorMonitor, type GeneratorStats, round } from './monitor.js';
import type { Plan } from './plan.js';
import { busyBetween, type MachineTicks, machineTicks, procCpuSeconds, procRssBytes, procSchedSeconds, procSyscalls } from './processes.js';
import { type HistogramFigures, histogramDelta, metric, type Scrape, scrape } from './prometheus.js';
import type { Tracker } from './tracker.js';

export interface PhaseOptions {
  label: string;
  /** Messages per second, over all sessions. */
  rate: number;
  durationS: number;
  warmupS: number;
  /** Longest wait after the last send for outstanding acks and deliveries. */
  drainS: number;
  log: (line: string) => void;
  progress: boolean;
}

export interface CpuFigures {
  /** CPU seconds of the system's own processes during the measurement window. */
  serviceSeconds: number | undefined;
  /** … of the shared infrastructure it uses (NATS, its PostgreSQL backends, Redis), from /proc. */
  infraSeconds: number | undefined;
  /** The same by name: `nats`, `postgres`, `redis`. */
  infraByName: Record<string, number>;
  /** Service CPU per delivered message, µs. */
  perDeliveryUs: number | undefined;
  /** Service and infrastructure CPU per delivered message, µs; undefined where part of the infrastructure could not be read. */
  perDeliveryAllUs: number | undefined;
  /** Whether the system uses shared infrastructure at all (plain ws uses none): without, its own CPU is all of it. */
  usesInfrastructure?: boolean;
  byProcess: Record<string, number>;
}

export interface PhaseResult {
  label: string;
  system: string;
  connections: number;
  sessions: number;
  targetRate: number;
  durationS: number;
  warmupS: number;
  sent: number;
  acked: number;
  /** Sends answered with an error (refused or failed), by code. */
  errors: number;
  errorCodes: Record<string, number>;
  deliveriesExpected: number;
  delivered: number;
  /** Acks and deliveries still missing after the drain: must be 0. */
  lost: { acks: number; deliveries: number };
  duplicates: number;
  outOfOrder: number;
  seqGaps: number;
  seqRegressions: number;
  unknownFrames: number;
  connectionsClosed: number;
  throughput: { sendsPerSec: number; acksPerSec: number; deliveriesPerSec: number };
  latency: { ack: LatencySummary; delivery: LatencySummary; deliveryFromSend: LatencySummary };
  cpu: CpuFigures;
  machine: MachineFigures;
  syscalls: SyscallFigures;
  serverSide: ServerSideFigures;
  gc: GcFigures;
  rssBytes: Record<string, number>;
  generator: GeneratorStats;
  /** From the end of the sends until nothing expected was missing (or the drain ran out); the settle period after it not included. */
  drainMs: number;
}

export interface CpuSnapshot {
  byProcess: Map<string, number>;
  scrapes: Map<string, Scrape>;
  /** CPU seconds of the shared infrastructure, by name and pid. */
  infra: Map<string, Map<number, number>>;
  /** The infrastructure the system says it uses, by name, whether or not any of its processes could be read. */
  infraNames?: ReadonlySet<string>;
  syscalls: Map<string, { reads: number; writes: number }>;
  machine: MachineTicks | undefined;
  /** Seconds on a CPU and waiting for one, by process, infrastructure name and `generator`, and pid. */
  sched: Map<string, Map<number, { run: number; wait: number }>>;
}

/**
 * What grew between two readings of a name's processes. A process that ended in between (a
 * PostgreSQL backend its pool closed) counts only while both readings saw it: it would otherwise
 * take all of its earlier time off the sum. One that started in between (a backend the pool
 * opened) counts whole: the pids are listed afresh at each reading, so it did all its work then.
 */
export function growth<T>(before: Map<number, T> | undefined, after: Map<number, T>, value: (reading: T) => number): number | undefined {
  if (!before) return undefined;
  let sum: number | undefined;
  for (const [pid, end] of after) {
    const start = before.get(pid);
    sum = (sum ?? 0) + value(end) - (start === undefined ? 0 : value(start));
  }
  return sum;
}

async function processCpu(process: System['processes'][number], scrapes: Map<string, Scrape>): Promise<number | undefined> {
  if (process.metricsUrl) {
    try {
      const scraped = await scrape(process.metricsUrl);
      scrapes.set(process.name, scraped);
      return metric(scraped, 'process_cpu_seconds_total');
    } catch {
      // fall back to /proc
    }
  }
  return process.pid === undefined ? undefined : procCpuSeconds(process.pid);
}

/** Every process's CPU now; the infrastructure's processes (PostgreSQL's backends come and go) are listed afresh. */
export async function cpuSnapshot(system: System): Promise<CpuSnapshot> {
  const infraPids = await system.infraPids();
  const byProcess = new Map<string, number>();
  const scrapes = new Map<string, Scrape>();
  await Promise.all(
    system.processes.map(async (process) => {
      const cpu = await processCpu(process, scrapes);
      if (cpu !== undefined) byProcess.set(process.name, cpu);
    }),
  );
  const syscalls = new Map<string, { reads: number; writes: number }>();
  for (const process of system.processes) {
    const counts = process.pid === undefined ? undefined : procSyscalls(process.pid);
    if (counts) syscalls.set(process.name, counts);
  }
  const infra = new Map<string, Map<number, number>>();
  const sched = new Map<string, Map<number, { run: number; wait: number }>>();
  const read = <T>(
    into: Map<string, Map<number, T>>,
    name: string,
    pids: readonly (number | undefined)[],
    reader: (pid: number) => T | undefined,
  ) => {
    for (const pid of pids) {
      if (pid === undefined) continue;
      const reading = reader(pid);
      if (reading === undefined) continue;
      const byPid = into.get(name) ?? new Map<number, T>();
      byPid.set(pid, reading);
      into.set(name, byPid);
    }
  };
  for (const [name, pids] of Object.entries(infraPids)) {
    read(infra, name, pids, procCpuSeconds);
    read(sched, name, pids, procSchedSeconds);
  }
  for (const process of system.processes) read(sched, process.name, [process.pid], procSchedSeconds);
  read(sched, 'generator', [globalThis.process.pid], procSchedSeconds);
  return { byProcess, scrapes, infra, infraNames: new Set(Object.keys(infraPids)), syscalls, machine: machineTicks(), sched };
}

/** What the services measured themselves during the window (Switchboard: the gateways' send-to-ack, persistence's batches). */
export interface ServerSideFigures {
  /** `switchboard_gateway_send_confirm_seconds`, in ms: from receiving send_message to message_ack, inside the gateway. */
  gatewaySendConfirmMs: HistogramFigures | undefined;
  /** `switchboard_persistence_commit_seconds`, in ms: one batch, BEGIN to COMMIT. */
  persistenceCommitMs: HistogramFigures | undefined;
  /** `switchboard_persistence_batch_size`. */
  persistenceBatchSize: HistogramFigures | undefined;
}

const inMs = (figures: HistogramFigures | undefined): HistogramFigures | undefined =>
  figures && {
    count: figures.count,
    mean: round(figures.mean * 1000, 3),
    p50: round(figures.p50 * 1000, 3),
    p90: round(figures.p90 * 1000, 3),
    p99: round(figures.p99 * 1000, 3),
  };

export function serverSideFigures(before: CpuSnapshot, after: CpuSnapshot): ServerSideFigures {
  const pick = (snapshot: CpuSnapshot, prefix: string) =>
    [...snapshot.scrapes.entries()].filter(([name]) => name.startsWith(prefix)).map(([, scraped]) => scraped);
  const batch = histogramDelta(pick(before, 'persistence'), pick(after, 'persistence'), 'switchboard_persistence_batch_size');
  return {
    gatewaySendConfirmMs: inMs(histogramDelta(pick(before, 'gateway'), pick(after, 'gateway'), 'switchboard_gateway_send_confirm_seconds')),
    persistenceCommitMs: inMs(
      histogramDelta(pick(before, 'persistence'), pick(after, 'persistence'), 'switchboard_persistence_commit_seconds'),
    ),
    persistenceBatchSize: batch && {
      count: batch.count,
      mean: round(batch.mean, 2),
      p50: round(batch.p50, 1),
      p90: round(batch.p90, 1),
      p99: round(batch.p99, 1),
    },
  };
}

/** Pauses of one kind of garbage collection in a process during the window. */
export interface GcPauses {
  count: number;
  totalMs: number;
  meanMs: number;
  /** Pauses over 10 ms (the histogram's bucket bound). */
  over10Ms: number;
}

/**
 * Garbage collection in each process with metrics, from Node's `nodejs_gc_duration_seconds`
 * (prom-client's default metrics): `minor` is a scavenge of the young generation, `major` a
 * mark-compact (for an incremental one, its final pause), `incremental` a step of incremental
 * marking on the main thread. The tail of the latencies often lines up with them.
 */
export type GcFigures = Record<string, { minor: GcPauses; major: GcPauses; incremental: GcPauses }>;

const GC_METRIC = 'nodejs_gc_duration_seconds';

/** Whether a process reports its garbage collections (a process has no series until its first of any kind). */
export const reportsGc = (scrape: Scrape): boolean => [...scrape.samples.keys()].some((series) => series.startsWith(`${GC_METRIC}_count`));

/** The full (mark-compact) collections a process had run by this scrape. */
export const fullCollectionsOf = (scrape: Scrape): number => metric(scrape, `${GC_METRIC}_count`, { kind: 'major' });

/** From each process's metrics scraped at the start (`before`) and end of the window, by process name. */
export function gcFigures(before: ReadonlyMap<string, Scrape>, after: ReadonlyMap<string, Scrape>): GcFigures {
  const figures: GcFigures = {};
  for (const [name, end] of after) {
    const start = before.get(name);
    if (!start || !reportsGc(end)) continue;
    const pauses = (kind: string): GcPauses => {
      const delta = (series: string, labels: Record<string, string> = {}) =>
        metric(end, `${GC_METRIC}_${series}`, { kind, ...labels }) - metric(start, `${GC_METRIC}_${series}`, { kind, ...labels });
      const count = delta('count');
      const totalMs = delta('sum') * 1000;
      return {
        count,
        totalMs: round(totalMs, 1),
        meanMs: count === 0 ? 0 : round(totalMs / count, 2),
        over10Ms: count - delta('bucket', { le: '0.01' }),
      };
    };
    figures[name] = { minor: pauses('minor'), major: pauses('major'), incremental: pauses('incremental') };
  }
  return figures;
}

export interface SyscallFigures {
  /** read and write system calls of each process during the measurement window (Linux, local processes). */
  byProcess: Record<string, { reads: number; writes: number }>;
  /** Per message sent in the window, by process. */
  perMessage: Record<string, { reads: number; writes: number }>;
}

export function syscallFigures(before: CpuSnapshot, after: CpuSnapshot, messages: number): SyscallFigures {
  const byProcess: SyscallFigures['byProcess'] = {};
  const perMessage: SyscallFigures['perMessage'] = {};
  for (const [name, end] of after.syscalls) {
    const start = before.syscalls.get(name);
    if (!start) continue;
    const reads = end.reads - start.reads;
    const writes = end.writes - start.writes;
    byProcess[name] = { reads, writes };
    if (messages > 0) perMessage[name] = { reads: round(reads / messages, 2), writes: round(writes / messages, 2) };
  }
  return { byProcess, perMessage };
}

/** How busy the whole machine was during the window, and how long each process waited for a CPU. */
export interface MachineFigures {
  /** Share of all the cores' time in the window that was not idle, steal included (/proc/stat). */
  busy: number | undefined;
  /** Share taken by the hypervisor for other guests. */
  steal: number | undefined;
  /**
   * Per process (all its threads), infrastructure name and `generator`: seconds it was ready to
   * run but waited for a CPU, per second it ran. Where it grows with the load (the Node
   * processes), every wake-up on the message path waits its turn for a core. A process that hands
   * work between its own threads (NATS) shows waits even on idle cores: a woken thread waits for
   * the core its waker holds.
   */
  waitPerRunSecond: Record<string, number>;
}

export const MACHINE_BUSY_WARN = 0.8;

export function machineFigures(before: CpuSnapshot, after: CpuSnapshot): MachineFigures {
  const shares = before.machine && after.machine ? busyBetween(before.machine, after.machine) : undefined;
  const waitPerRunSecond: Record<string, number> = {};
  for (const [name, byPid] of after.sched) {
    const run = growth(before.sched.get(name), byPid, (seconds) => seconds.run);
    const wait = growth(before.sched.get(name), byPid, (seconds) => seconds.wait);
    if (run !== undefined && wait !== undefined && run > 0) waitPerRunSecond[name] = round(wait / run, 2);
  }
  return {
    busy: shares && round(shares.busy, 3),
    steal: shares && round(shares.steal, 3),
    waitPerRunSecond,
  };
}

export function cpuFigures(before: CpuSnapshot, after: CpuSnapshot, deliveries: number): CpuFigures {
  const byProcess: Record<string, number> = {};
  let service = 0;
  let any = false;
  for (const [name, end] of after.byProcess) {
    const start = before.byProcess.get(name);
    if (start === undefined) continue;
    byProcess[name] = round(end - start, 3);
    service += end - start;
    any = true;
  }
  const infraByName: Record<string, number> = {};
  let infra: number | undefined;
  // A name read at one end only (PostgreSQL's backends when its query failed there), or at
  // neither (none of its processes found: a PostgreSQL in a container), leaves "all" unknown:
  // summed without it, the figure would look whole and be short by its share.
  let infraComplete = true;
  const declared = new Set([...(before.infraNames ?? []), ...(after.infraNames ?? [])]);
  for (const name of new Set([...declared, ...before.infra.keys(), ...after.infra.keys()])) {
    const byPid = after.infra.get(name);
    const seconds = byPid === undefined ? undefined : growth(before.infra.get(name), byPid, (cpu) => cpu);
    if (seconds === undefined) {
      infraComplete = false;
      continue;
    }
    infraByName[name] = round(seconds, 3);
    infra = (infra ?? 0) + seconds;
  }
  const per = (seconds: number | undefined) =>
    seconds === undefined || deliveries === 0 ? undefined : round((seconds * 1e6) / deliveries, 2);
  return {
    serviceSeconds: any ? round(service, 3) : undefined,
    infraSeconds: infra === undefined ? undefined : round(infra, 3),
    perDeliveryUs: per(any ? service : undefined),
    perDeliveryAllUs: per(any && infra !== undefined && infraComplete ? service + infra : undefined),
    usesInfrastructure: declared.size > 0 || infra !== undefined,
    byProcess,
    infraByName,
  };
}

export async function rssOf(system: System): Promise<Record<string, number>> {
  const rss: Record<string, number> = {};
  await Promise.all(
    system.processes.map(async (process) => {
      let bytes: number | undefined;
      if (process.metricsUrl) bytes = metric(await scrape(process.metricsUrl).catch(() => undefined), 'process_resident_memory_bytes');
      if (!bytes && process.pid !== undefined) bytes = procRssBytes(process.pid);
      if (bytes) rss[process.name] = bytes;
    }),
  );
  return rss;
}

/**
 * How long a phase keeps listening once every ack and delivery it expects has arrived (at most
 * the drain's remainder): a redelivery that comes later still counts as a duplicate.
 */
export const SETTLE_MS = 1_000;

/**
 * One open-loop phase: sends are scheduled at `rate` per second, whatever the acks,
 * and each latency is measured from its scheduled time, so a stalled system cannot hide its
 * stall by slowing the generator down (no coordinated omission). Message g goes to session
 * g mod S, from the next member of that session in turn. Latencies count only for messages
 * scheduled after the warm-up; losses and duplicates count for all.
 */
export async function runPhase(system: System, plan: Plan, tracker: Tracker, options: PhaseOptions): Promise<PhaseResult> {
  const { rate, durationS, warmupS, drainS, log } = options;
  const total = Math.max(1, Math.round(rate * (warmupS + durationS)));
  const first = tracker.count;
  const startCounters = { ...tracker.counters };
  const startErrors = new Map(tracker.errorCodes);
  const monitor = new GeneratorMonitor();
  tracker.resetHistograms();

  const start = performance.now() + 5;
  const warmupEnd = start + warmupS * 1000;
  const end = start + (warmupS + durationS) * 1000;
  const intervalMs = 1000 / rate;
  let scheduledCount = 0;
  let cpuBefore: Promise<CpuSnapshot> | undefined;
  let cpuAfter: Promise<CpuSnapshot> | undefined;
  let windowDeliveriesAtEnd = 0;
  let windowOpenedAt: number | undefined;
  let windowClosedAt: number | undefined;
  let windowAcksAtEnd = 0;
  /** Sends made by the time the window opened and closed: the rate the generator really kept. */
  let sentAtOpen = 0;
  let sentAtClose = 0;

  const sendDue = () => {
    const now = performance.now();
    while (scheduledCount < total) {
      const scheduled = start + scheduledCount * intervalMs;
      if (scheduled > now) break;
      const g = first + scheduledCount;
      const session = g % plan.sessions;
      const members = plan.members[session] ?? [];
      const sender = members[Math.floor(g / plan.sessions) % members.length] ?? 0;
      // Counted before it is sent: a driver that answered synchronously would call this again
      // (through the tracker's onActivity), and must then go on from the next message.
      scheduledCount++;
      tracker.register(session, sender, scheduled, scheduled >= warmupEnd);
      system.send(sender, session, clientMsgIdOf(g), contentOf(g, scheduled));
    }
  };

  let lastLine = { sent: startCounters.sent, acked: startCounters.acked, delivered: startCounters.delivered };
  const progress = setInterval(() => {
    const now = performance.now();
    const sample = monitor.sample();
    if (!options.progress) return;
    const c = tracker.counters;
    const p99 = tracker.interval.totalCount > 0 ? tracker.interval.getValueAtPercentile(99) / 1000 : 0;
    const phase = now < warmupEnd ? 'warm-up' : now < end ? 'measure' : 'drain';
    log(
      `[${options.label}] ${((now - start) / 1000).toFixed(0).padStart(3)}s ${phase.padEnd(7)} sent ${c.sent - startCounters.sent} (+${c.sent - lastLine.sent}) ` +
        `acked ${c.acked - startCounters.acked} (+${c.acked - lastLine.acked}) delivered ${c.delivered - startCounters.delivered} (+${c.delivered - lastLine.delivered}) ` +
        `p99 ${p99.toFixed(1)} ms  gen cpu ${(sample.cpu * 100).toFixed(0)}% lag ${sample.lagP99.toFixed(1)} ms`,
    );
    lastLine = { sent: c.sent, acked: c.acked, delivered: c.delivered };
    tracker.interval.reset();
  }, 1000);

  // What has fallen due is sent at every ack and delivery the generator handles, as well as on the
  // 1 ms tick below. Node's timers fire on whole milliseconds of a clock read once per turn of the
  // event loop, so paced by the tick alone a message left on average 0.6 ms after its scheduled
  // time at the load, and every latency measured from that time counted it; a busy
  // generator is woken by arriving frames far more often than that. It adds no wake-up.
  tracker.onActivity = sendDue;
  try {
    await new Promise<void>((resolve) => {
      const tick = () => {
        sendDue();
        const now = performance.now();
        if (!cpuBefore && now >= warmupEnd) {
          // The measurement window opens: arrivals count for throughput from here.
          tracker.windowOpen = true;
          windowOpenedAt = now;
          sentAtOpen = tracker.counters.sent;
          monitor.reset();
          system.onWindowOpen?.();
          cpuBefore = cpuSnapshot(system);
        }
        if (now >= end && !cpuAfter) {
          // Window closed: stop counting arrivals for throughput, read CPU.
          tracker.windowOpen = false;
          windowClosedAt = now;
          windowDeliveriesAtEnd = tracker.windowDeliveries;
          windowAcksAtEnd = tracker.windowAcks;
          sentAtClose = tracker.counters.sent;
          cpuBefore ??= cpuSnapshot(system);
          cpuAfter = cpuSnapshot(system);
        }
        if (scheduledCount >= total && cpuAfter) resolve();
        else setTimeout(tick, 1);
      };
      setTimeout(tick, Math.max(0, start - performance.now()));
    });
    const generator = monitor.stats();
    const drainStart = performance.now();
    while (performance.now() - drainStart < drainS * 1000) {
      const left = tracker.outstanding(first, first + total);
      if (left.acks === 0 && left.deliveries === 0) break;
      await sleep(50);
    }
    const drainMs = Math.round(performance.now() - drainStart);
    await sleep(Math.max(0, Math.min(SETTLE_MS, drainS * 1000 - drainMs)));
    const [before, after] = await Promise.all([cpuBefore ?? cpuSnapshot(system), cpuAfter ?? cpuSnapshot(system)]);
    const c = tracker.counters;
    const left = tracker.outstanding(first, first + total);
    const errorCodes: Record<string, number> = {};
    for (const [code, count] of tracker.errorCodes) {
      const diff = count - (startErrors.get(code) ?? 0);
      if (diff > 0) errorCodes[code] = diff;
    }
    const rssBytes = await rssOf(system);
    // The window opens and closes on the tick after its planned times, later by the generator's
    // lag: arrivals are counted over the time it really was open.
    // (Opened and closed on one tick, when the generator stalled through the whole window: the planned length.)
    const openS = windowOpenedAt === undefined || windowClosedAt === undefined ? 0 : (windowClosedAt - windowOpenedAt) / 1000;
    const windowS = openS > 0 ? openS : durationS;
    return {
      label: options.label,
      system: system.name,
      connections: plan.connections,
      sessions: plan.sessions,
      targetRate: rate,
      durationS,
      warmupS,
      sent: c.sent - startCounters.sent,
      acked: c.acked - startCounters.acked,
      errors: c.errors - startCounters.errors,
      errorCodes,
      deliveriesExpected: tracker.expectedDeliveries(first, first + total),
      delivered: c.delivered - startCounters.delivered,
      lost: left,
      duplicates: c.duplicates - startCounters.duplicates,
      outOfOrder: c.outOfOrder - startCounters.outOfOrder,
      seqGaps: c.seqGaps - startCounters.seqGaps,
      seqRegressions: c.seqRegressions - startCounters.seqRegressions,
      unknownFrames: c.unknown - startCounters.unknown,
      connectionsClosed: c.closed - startCounters.closed,
      throughput: {
        sendsPerSec: round(Math.max(0, sentAtClose - sentAtOpen) / windowS, 1),
        acksPerSec: round(windowAcksAtEnd / windowS, 1),
        deliveriesPerSec: round(windowDeliveriesAtEnd / windowS, 1),
      },
      latency: {
        ack: summarize(tracker.ackLatency),
        delivery: summarize(tracker.deliveryLatency),
        deliveryFromSend: summarize(tracker.deliveryFromSend),
      },
      cpu: cpuFigures(before, after, windowDeliveriesAtEnd),
      machine: machineFigures(before, after),
      // Per message sent in the window: at a step the generator cannot keep up with, fewer than planned.
      syscalls: syscallFigures(before, after, sentAtClose - sentAtOpen),
      serverSide: serverSideFigures(before, after),
      gc: gcFigures(before.scrapes, after.scrapes),
      rssBytes,
      generator,
      drainMs,
    };
  } finally {
    tracker.onActivity = undefined;
    clearInterval(progress);
    tracker.windowOpen = false;
    monitor.stop();
  }
}

/** Zero losses, duplicates, out-of-order deliveries, seq gaps and regressions, and errors. */
export function isClean(result: PhaseResult): boolean {
  return (
    result.lost.acks === 0 &&
    result.lost.deliveries === 0 &&
    result.duplicates === 0 &&
    result.outOfOrder === 0 &&
    result.seqRegressions === 0 &&
    result.seqGaps === 0 &&
    result.errors === 0
  );
}

/**
 * What the report should warn of in one phase: the generator's own warnings, frames the bench
 * could not attribute to a message it sent, and connections closed under load.
 */
export function phaseWarnings(result: PhaseResult): string[] {
  const warnings = [...result.generator.warnings];
  const plural = (count: number, what: string) => `${count} ${what}${count === 1 ? '' : 's'}`;
  if (result.unknownFrames > 0)
    warnings.push(`${plural(result.unknownFrames, 'frame')} the bench could not attribute to a message it sent (see the JSON)`);
  if (result.connectionsClosed > 0) warnings.push(`${plural(result.connectionsClosed, 'connection')} closed under load`);
  return warnings;
}
