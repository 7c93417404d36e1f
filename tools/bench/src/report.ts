import { type GcFigures, type GcPauses, isClean, type MachineFigures, type PhaseResult } from './load.js';
import type { HeapProfileSummary, ProfileSummary } from './profile.js';
import {
  type Comparison,
  IDLE_EARLY_READ_MS,
  IDLE_SETTLE_MS,
  type IdleMemoryResult,
  type LoadParams,
  PERSISTENCE,
  type PersistenceResult,
  RAMP,
  type RampParams,
  type RampResult,
  SCALE_OUT,
  type ScaleOutStep,
  TARGET,
} from './scenarios.js';

export interface BenchResults {
  scenarios: {
    quick?: Comparison;
    steady?: Comparison;
    fanout?: Comparison;
    target?: Comparison;
    ramp?: { params: RampParams; systems: RampResult[] };
    'idle-memory'?: { connections: number; ulimit: number; systems: IdleMemoryResult[] };
    'scale-out'?: {
      params: LoadParams;
      steps: ScaleOutStep[];
      cpuGrowth: number | null;
      cpuGrowthAll: number | null;
      privateNats: boolean;
    };
    persistence?: PersistenceResult;
  };
}

export interface TargetRow {
  target: string;
  measured: string;
  /** `undetermined` where a figure is only a lower bound on the side that decides. */
  met: boolean | 'undetermined' | null;
}

const fmt = (value: number | undefined | null, digits = 1) =>
  value === undefined || value === null || Number.isNaN(value) ? '–' : value.toFixed(digits);
const int = (value: number | undefined | null) => (value === undefined || value === null ? '–' : Math.round(value).toLocaleString('en-US'));
const kib = (bytes: number) => (bytes / 1024).toFixed(1);

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((row) => `| ${row.join(' | ')} |`)].join(
    '\n',
  );
}

const SYSTEM_NAMES: Record<string, string> = { switchboard: 'Switchboard', ws: 'plain ws', socketio: 'Socket.IO + Redis' };
const nameOf = (system: string) => SYSTEM_NAMES[system] ?? system;

export function phaseRow(run: PhaseResult): string[] {
  const cpu = run.cpu.perDeliveryUs === undefined ? '–' : `${fmt(run.cpu.perDeliveryUs)} / ${fmt(run.cpu.perDeliveryAllUs)}`;
  return [
    nameOf(run.system),
    `${int(run.targetRate)}`,
    int(run.throughput.acksPerSec),
    int(run.throughput.deliveriesPerSec),
    `${fmt(run.latency.ack.p50, 2)} / ${fmt(run.latency.ack.p99, 2)}`,
    fmt(run.latency.delivery.p50, 2),
    fmt(run.latency.delivery.p90, 2),
    fmt(run.latency.delivery.p99, 2),
    fmt(run.latency.delivery.p999, 2),
    fmt(run.latency.delivery.max, 2),
    `${run.lost.acks} / ${run.lost.deliveries}`,
    `${run.duplicates} / ${run.outOfOrder}`,
    String(run.errors),
    cpu,
    `${Math.round(run.generator.cpuMean * 100)}%`,
  ];
}

export const PHASE_HEADER = [
  'system',
  'offered msg/s',
  'acks/s',
  'deliveries/s',
  'ack p50 / p99 ms',
  'delivery p50',
  'p90',
  'p99',
  'p99.9',
  'max',
  'lost acks / deliveries',
  'dup / out-of-order',
  'errors',
  'CPU µs per delivery (services / + NATS, PG, Redis)',
  'generator CPU',
];

/** The issue's bound on memory per idle connection: 12 KB. */
const IDLE_TARGET_BYTES = 12_000;

const pausesText = (pauses: GcPauses, what: string) =>
  `${pauses.count} ${what}${pauses.count === 1 ? '' : 's'}` +
  (pauses.count === 0 ? '' : ` (mean ${fmt(pauses.meanMs, 1)} ms, ${pauses.over10Ms} over 10 ms)`);

/** How many full collections the socket-holding processes ran after the last join, and by which reading the last one. */
function fullCollectionsText(system: IdleMemoryResult): string {
  const count = system.readings.at(-1)?.fullCollections;
  if (count === undefined) return '–';
  return system.lastFullCollectionMs === undefined ? int(count) : `${int(count)}, the last by ${system.lastFullCollectionMs / 1000} s`;
}

/** One line on each process's garbage collection in the window, or undefined when none reported it. */
export function gcSummary(gc: GcFigures): string | undefined {
  const parts = Object.entries(gc)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(
      ([name, { minor, major, incremental }]) =>
        `${name} ${pausesText(minor, 'scavenge')}, ${pausesText(major, 'mark-compact')} and ${pausesText(incremental, 'incremental marking step')}`,
    );
  return parts.length === 0 ? undefined : parts.join('; ');
}

/** One line on how busy the machine was in the window, or undefined where /proc did not tell. */
export function machineSummary(machine: MachineFigures): string | undefined {
  if (machine.busy === undefined) return undefined;
  const waits = Object.entries(machine.waitPerRunSecond)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, ratio]) => `${name} ${fmt(ratio, 2)}`);
  return (
    `${Math.round(machine.busy * 100)}% of the cores busy (steal ${fmt((machine.steal ?? 0) * 100, 1)}%)` +
    (waits.length === 0 ? '' : `; seconds each process waited for a CPU per second it ran: ${waits.join(', ')}`)
  );
}

function comparisonSection(title: string, comparison: Comparison): string {
  const { params } = comparison;
  const members = params.membersRange
    ? `${params.membersRange[0]}–${params.membersRange[1]} members`
    : `${params.connectionsPlanned / params.sessions} members`;
  const lines = [
    `### ${title}`,
    '',
    `${params.connectionsPlanned} connections, ${params.sessions} sessions of ${members}, ${params.rate} msg/s open loop for ${params.durationS} s after ${params.warmupS} s warm-up, Switchboard on ${params.gateways} gateways. Latencies in ms from the scheduled send time.`,
    '',
    table(PHASE_HEADER, comparison.runs.map(phaseRow)),
  ];
  for (const [baseline, ratio] of Object.entries(comparison.ratios)) {
    lines.push(
      '',
      `Switchboard ÷ ${nameOf(baseline)}: delivery p50 ${fmt(ratio.deliveryP50, 2)}×, p99 ${fmt(ratio.deliveryP99, 2)}×, ack p50 ${fmt(ratio.ackP50, 2)}×, deliveries/s ${fmt(ratio.deliveriesPerSec, 2)}×, CPU per delivery ${fmt(ratio.cpuPerDelivery, 2)}× (${fmt(ratio.cpuPerDeliveryAll, 2)}× with the infrastructure each uses)`,
    );
  }
  for (const run of comparison.runs) {
    const gc = gcSummary(run.gc);
    if (gc) lines.push('', `Garbage collection in ${nameOf(run.system)} during the window: ${gc}.`);
  }
  for (const run of comparison.runs) {
    const machine = machineSummary(run.machine);
    if (machine) lines.push('', `The machine during ${nameOf(run.system)}'s window: ${machine}.`);
  }
  return lines.join('\n');
}

export function markdown(results: BenchResults, targets: TargetRow[], warnings: string[], errors: Record<string, string> = {}): string {
  const sections: string[] = [];
  const s = results.scenarios;
  if (s.quick) sections.push(comparisonSection('quick', s.quick));
  if (s.steady) sections.push(comparisonSection('steady', s.steady));
  if (s.target) sections.push(comparisonSection('target load (the issue: 1,000 msg/s into 2,000 sessions of 2–10 members)', s.target));
  if (s.fanout) sections.push(comparisonSection('fanout (one session)', s.fanout));
  if (s.ramp) {
    const rows = s.ramp.systems.map((system) => [
      nameOf(system.system),
      `${system.sustainableLowerBound ? '≥ ' : ''}${int(system.sustainableRate)}`,
      `${system.lowerBound ? '≥ ' : ''}${int(system.saturatedDeliveriesPerSec)}`,
      system.stopReason,
    ]);
    const steps = s.ramp.systems.flatMap((system) =>
      system.steps.map((step) => [
        nameOf(system.system),
        int(step.targetRate),
        int(step.throughput.deliveriesPerSec),
        fmt(step.latency.delivery.p50, 2),
        fmt(step.latency.delivery.p99, 2),
        `${step.lost.acks + step.lost.deliveries} / ${step.errors}`,
        fmt(step.cpu.perDeliveryUs),
        step.machine.busy === undefined ? '–' : `${Math.round(step.machine.busy * 100)}%`,
        `${Math.round(step.generator.cpuMean * 100)}%`,
      ]),
    );
    sections.push(
      [
        '### ramp',
        '',
        table(['system', 'highest sustained msg/s', 'most deliveries/s', 'stopped'], rows),
        '',
        table(
          [
            'system',
            'offered msg/s',
            'deliveries/s',
            'delivery p50 ms',
            'p99 ms',
            'lost / errors',
            'CPU µs/delivery',
            'cores busy',
            'generator CPU',
          ],
          steps,
        ),
      ].join('\n'),
    );
  }
  if (s['idle-memory']) {
    const rows = s['idle-memory'].systems.map((system) => [
      system.label,
      int(system.connections),
      `${(system.rssBeforeBytes / 2 ** 20).toFixed(1)} → ${(system.rssAfterBytes / 2 ** 20).toFixed(1)} MiB`,
      kib(system.bytesPerConnectionAt5s),
      kib(system.heapBytesPerConnectionAt5s),
      kib(system.bytesPerConnectionAt60s),
      kib(system.heapBytesPerConnectionAt60s),
      kib(system.bytesPerConnection),
      kib(system.heapBytesPerConnection),
      kib(system.externalBytesPerConnection),
      fullCollectionsText(system),
    ]);
    sections.push(
      [
        '### idle memory',
        '',
        table(
          [
            'system',
            'connections',
            'RSS of the socket-holding processes',
            'KiB RSS per connection at 5 s',
            'KiB heap at 5 s',
            `KiB RSS at ${IDLE_EARLY_READ_MS / 1000} s`,
            `KiB heap at ${IDLE_EARLY_READ_MS / 1000} s`,
            `KiB RSS per connection after ${IDLE_SETTLE_MS / 1000} s idle`,
            'KiB heap after it',
            'KiB outside the heap after it',
            'full collections after the last join',
          ],
          rows,
        ),
      ].join('\n'),
    );
  }
  if (s['scale-out']) {
    const so = s['scale-out'];
    const base = so.steps[0]?.result.cpu.perDeliveryUs;
    const rows = so.steps.map((step) => [
      String(step.gateways),
      int(step.result.throughput.deliveriesPerSec),
      `${fmt(step.result.latency.delivery.p50, 2)} / ${fmt(step.result.latency.delivery.p99, 2)}`,
      fmt(step.result.cpu.perDeliveryUs),
      fmt(step.result.cpu.perDeliveryAllUs),
      base && step.result.cpu.perDeliveryUs ? `${(step.result.cpu.perDeliveryUs / base).toFixed(2)}×` : '–',
      `${step.result.lost.acks + step.result.lost.deliveries} / ${step.result.duplicates} / ${step.result.outOfOrder}`,
    ]);
    const nats = so.steps.flatMap((step) =>
      (step.nats ?? []).map((gateway) => [
        `${step.gateways}`,
        `${gateway.gateway}`,
        int(gateway.hostedSessions),
        `${int(gateway.confirmedSubscriptions)} (${gateway.subscriptionsMatchHosted ? 'exactly its sessions' : 'MISMATCH'})`,
        int(gateway.natsMessagesIn),
        int(gateway.expectedConfirmedEvents),
        int(gateway.expectedPubAcks),
        int(gateway.otherMessages),
        `${Math.round(gateway.shareOfAllEvents * 100)}%`,
      ]),
    );
    sections.push(
      [
        '### scale-out',
        '',
        table(
          [
            'gateways',
            'deliveries/s',
            'delivery p50 / p99 ms',
            'CPU µs/delivery (Node services)',
            '+ NATS and PG backends',
            'growth vs 1 gateway',
            'lost / dup / out-of-order',
          ],
          rows,
        ),
        '',
        nats.length
          ? table(
              [
                'gateways',
                'gateway',
                'hosted sessions',
                'confirmed subscriptions',
                'NATS msgs in',
                'events of its sessions',
                'PubAcks',
                'other',
                'share of all events',
              ],
              nats,
            )
          : '(no per-gateway NATS figures: no monitored NATS)',
      ].join('\n'),
    );
  }
  if (s.persistence) {
    const p = s.persistence;
    sections.push(
      [
        '### persistence',
        '',
        `One persistence process; ${p.params.sessions} sessions; ${p.params.inFlight} JetStream publishes in flight; content ${p.params.contentChars} chars. Durability: ${Object.entries(
          p.durability,
        )
          .map(([key, value]) => `${key}=${value}`)
          .join(', ')}.`,
        '',
        table(
          ['phase', 'published/s', 'stored/s', 'mean batch', 'mean commit ms', 'persistence CPU µs per message', 'duplicates'],
          [
            [
              'live (publish while storing)',
              int(p.live.publishPerSec),
              int(p.live.sustainedStoredPerSec),
              fmt(p.live.meanBatchSize),
              fmt(p.live.meanCommitMs, 2),
              fmt(p.live.cpuPerMessageUs),
              String(p.live.duplicates),
            ],
            [
              `backlog of ${int(p.backlog.messages)}`,
              int(p.backlog.publishPerSec),
              int(p.backlog.storedPerSec),
              fmt(p.backlog.meanBatchSize),
              fmt(p.backlog.meanCommitMs, 2),
              fmt(p.backlog.cpuPerMessageUs),
              String(p.backlog.duplicates),
            ],
            [
              `NATS alone: the same backlog over ${int(p.natsOnly.subjects)} subjects, consumed and acked, nothing stored`,
              '',
              `${int(p.natsOnly.consumedPerSec)} (consumed)`,
              '',
              '',
              '',
              '',
            ],
          ],
        ),
      ].join('\n'),
    );
  }
  if (targets.length) {
    const rows = targets.map((row) => [
      row.target,
      row.measured,
      row.met === null ? 'not judged' : row.met === 'undetermined' ? 'undetermined (lower bounds)' : row.met ? 'yes' : '**no**',
    ]);
    sections.push(['### targets', '', table(['target', 'measured', 'met'], rows)].join('\n'));
  }
  const failed = Object.entries(errors);
  if (failed.length)
    sections.push(
      [
        '### failed scenarios',
        '',
        ...failed.map(([scenario, error]) => `- ${scenario}: ${error.split('\n')[0]} (the whole error is in the JSON file and on stderr)`),
      ].join('\n'),
    );
  if (warnings.length) sections.push(['### warnings', '', ...warnings.map((warning) => `- ${warning}`)].join('\n'));
  return `${sections.join('\n\n')}\n`;
}

/**
 * Our saturation as a share of a baseline's; "≤" when the baseline's figure is only a lower
 * bound, "≥" when ours is, and unknown when both are.
 */
function share(ours: RampResult, baseline: RampResult): string {
  if (baseline.saturatedDeliveriesPerSec <= 0) return 'no share (the baseline had no clean step)';
  const percent = Math.round((ours.saturatedDeliveriesPerSec / baseline.saturatedDeliveriesPerSec) * 100);
  if (ours.lowerBound && baseline.lowerBound) return `unknown (${percent}% of two lower bounds)`;
  const sign = baseline.lowerBound && !ours.lowerBound ? '≤ ' : ours.lowerBound && !baseline.lowerBound ? '≥ ' : '';
  return `${sign}${percent}%`;
}

/**
 * Whether our saturation is at least `fraction` of a baseline's. A figure that is only a lower
 * bound can decide only one way: a baseline's can fail us but not pass us, ours can pass us but
 * not fail us.
 */
export function reachesShare(ours: RampResult, baseline: RampResult, fraction: number): boolean | 'undetermined' {
  // A baseline with no clean step has no figure to compare with.
  if (baseline.saturatedDeliveriesPerSec <= 0) return 'undetermined';
  const reaches = ours.saturatedDeliveriesPerSec >= fraction * baseline.saturatedDeliveriesPerSec;
  if (reaches) return baseline.lowerBound ? 'undetermined' : true;
  return ours.lowerBound ? 'undetermined' : false;
}

/** Both met: false if either is not, undetermined if either is. */
const both = (a: boolean | 'undetermined', b: boolean | 'undetermined') =>
  a === false || b === false ? false : a === 'undetermined' || b === 'undetermined' ? 'undetermined' : true;

/**
 * Whether a run recorded the delivery latencies its percentiles stand for: with none, p50 and p99
 * read 0. Latencies count for the messages scheduled after the warm-up, so about that share of
 * the deliveries expected; a tenth short is allowed for the rounding of the split.
 */
export function latencyRecorded(run: PhaseResult): boolean {
  const measuredShare = run.durationS / (run.durationS + run.warmupS);
  return run.latency.delivery.count > 0 && run.latency.delivery.count >= 0.9 * run.deliveriesExpected * measuredShare;
}

/** PostgreSQL settings under which a commit is on disk when it returns. */
export function durableCommits(durability: Record<string, string>): boolean {
  return durability.fsync === 'on' && ['on', 'local', 'remote_write', 'remote_apply'].includes(durability.synchronous_commit ?? '');
}

/** How a run was made, beyond each scenario's load: what decides whether its figures may judge a target. */
export interface RunConditions {
  /** How many gateways of a deployment were driven with `--target`; undefined when the bench started the system. */
  targetGateways?: number;
  /** Each message's content, in characters (`--content-chars`; the issue's runs: 100). */
  contentChars: number;
  /** The services ran under a CPU or heap profiler (`--profile`, `--heap-profile`), which slows them. */
  profiled: boolean;
}

export const ISSUE_CONDITIONS: RunConditions = { contentChars: 100, profiled: false };

/** The issue's targets, measured value against each. */
export function targetsOf(results: BenchResults, conditions: RunConditions = ISSUE_CONDITIONS): TargetRow[] {
  const s = results.scenarios;
  const rows: TargetRow[] = [];
  // Services under a profiler are not the issue's run, and neither are messages of another size
  // where the driver's messages are measured (persistence publishes its own, idle memory none):
  // the figures are reported, and not judged.
  const profiledNote = conditions.profiled ? '(services profiled, not judged) ' : '';
  const resized = conditions.contentChars !== ISSUE_CONDITIONS.contentChars;
  const runNote = `${profiledNote}${resized ? `(content of ${conditions.contentChars} characters, not judged) ` : ''}`;
  const asIssue = !conditions.profiled && !resized;
  /** Against a deployment, the baselines and the memory readings are not of the system the bench ran beside them. */
  const remote = conditions.targetGateways !== undefined;
  const target = s.target?.runs.find((run) => run.system === 'switchboard');
  const targetParams = s.target?.params;
  // Only the issue's load, measured as long and on as many gateways as the scenario's defaults,
  // counts for this target; a shorter, scaled-down or scaled-out run is reported but not judged.
  const issueLoad =
    targetParams !== undefined &&
    targetParams.rate >= TARGET.rate &&
    targetParams.sessions >= TARGET.sessions &&
    targetParams.durationS >= TARGET.durationS &&
    targetParams.warmupS >= TARGET.warmupS &&
    (conditions.targetGateways ?? targetParams.gateways) === TARGET.gateways;
  rows.push({
    target: '1,000 msg/s into 2,000 sessions of 2–10 members: delivery p50 ≤ 3 ms, p99 ≤ 25 ms, nothing lost',
    measured: target
      ? `${runNote}${issueLoad ? '' : `(at ${targetParams?.rate} msg/s into ${targetParams?.sessions} sessions on ${conditions.targetGateways ?? targetParams?.gateways} gateways for ${targetParams?.durationS} s after ${targetParams?.warmupS} s, not the issue's run) `}p50 ${fmt(target.latency.delivery.p50, 2)} ms, p99 ${fmt(target.latency.delivery.p99, 2)} ms over ${int(target.latency.delivery.count)} deliveries, lost ${target.lost.acks + target.lost.deliveries}, dup ${target.duplicates}, out-of-order ${target.outOfOrder}, seq gaps ${target.seqGaps}, seq regressions ${target.seqRegressions}, errors ${target.errors}`
      : '–',
    met:
      !target || !issueLoad || !asIssue
        ? null
        : latencyRecorded(target) && target.latency.delivery.p50 <= 3 && target.latency.delivery.p99 <= 25 && isClean(target),
  });
  const p = s.persistence;
  // A smaller backlog or a shorter run measures a burst, not a sustained rate: reported, not judged.
  const sustained =
    p !== undefined &&
    p.params.backlog >= PERSISTENCE.backlog &&
    p.params.durationS >= PERSISTENCE.durationS &&
    p.params.sessions === PERSISTENCE.sessions &&
    p.params.contentChars === PERSISTENCE.contentChars;
  const capacity = p && sustained ? Math.max(p.backlog.storedPerSec, p.live.sustainedStoredPerSec) : undefined;
  // A rate counts only if everything published was stored: live, by the end of the drain; the
  // backlog, before the drain's time ran out.
  const allStored = p !== undefined && p.live.stored >= p.live.published && p.backlog.stored >= p.backlog.messages;
  rows.push({
    target: 'Persistence ≥ 10,000 stored messages/s sustained with durable commits',
    measured: p
      ? `${profiledNote}${sustained ? '' : `(a backlog of ${int(p.params.backlog)} into ${int(p.params.sessions)} sessions and ${p.params.durationS} s live, content of ${p.params.contentChars} characters, not judged) `}${int(p.backlog.storedPerSec)}/s draining a backlog; ${int(p.live.sustainedStoredPerSec)}/s while publishing at ${int(p.live.publishPerSec)}/s (synchronous_commit=${p.durability.synchronous_commit}, fsync=${p.durability.fsync}); stored ${int(p.live.stored)} of ${int(p.live.published)} published live, ${int(p.backlog.stored)} of the backlog's ${int(p.backlog.messages)}`
      : '–',
    met: capacity === undefined || !p || conditions.profiled ? null : capacity >= 10_000 && allStored && durableCommits(p.durability),
  });
  const ramp = s.ramp?.systems;
  // Socket.IO runs on two processes: Switchboard's ramp is judged against it on two gateways only.
  const rampGateways = s.ramp?.params.gateways ?? RAMP.gateways;
  // And on the scenario's own sockets and sessions: another load is reported, not judged.
  const rampLoad = s.ramp === undefined || (s.ramp.params.connections === RAMP.connections && s.ramp.params.sessions === RAMP.sessions);
  const ours = ramp?.find((system) => system.system === 'switchboard');
  const ws = ramp?.find((system) => system.system === 'ws');
  const sio = ramp?.find((system) => system.system === 'socketio');
  rows.push({
    target: 'Saturated deliveries/s ≥ 50% of the plain-ws baseline and ≥ 100% of Socket.IO + Redis',
    measured:
      ours && ws && sio
        ? `${runNote}${remote ? '(Switchboard a deployment, the baselines on this machine: not judged) ' : ''}${rampGateways === RAMP.gateways ? '' : `(Switchboard on ${rampGateways} gateways, not judged) `}${rampLoad ? '' : `(${s.ramp?.params.connections} connections in ${s.ramp?.params.sessions} sessions, not judged) `}${ours.lowerBound ? '≥ ' : ''}${int(ours.saturatedDeliveriesPerSec)}/s = ${share(ours, ws)} of plain ws (${ws.lowerBound ? '≥ ' : ''}${int(ws.saturatedDeliveriesPerSec)}/s), ${share(ours, sio)} of Socket.IO + Redis (${sio.lowerBound ? '≥ ' : ''}${int(sio.saturatedDeliveriesPerSec)}/s)`
        : '–',
    met:
      ours && ws && sio && rampGateways === RAMP.gateways && rampLoad && asIssue && !remote
        ? both(reachesShare(ours, ws, 0.5), reachesShare(ours, sio, 1))
        : null,
  });
  const idle = s['idle-memory']?.systems.find((system) => system.system === 'switchboard');
  rows.push({
    target: '≤ 12 KB of gateway memory per idle authenticated joined connection at 10,000 connections',
    measured: idle
      ? `${profiledNote}${remote ? '(a deployment: the memory read is of the processes --metrics names, not judged) ' : ''}${idle.connections >= 10_000 ? '' : `(${int(idle.connections)} connections, not judged) `}${idle.closedWhileIdle > 0 ? `(${int(idle.closedWhileIdle)} connections closed while idle, not judged) ` : ''}${kib(idle.bytesPerConnection)} KiB RSS (${kib(idle.heapBytesPerConnection)} KiB heap) per connection at ${int(idle.connections)}, after ${idle.settleMs / 1000} s idle; ${kib(idle.bytesPerConnectionAt60s)} KiB at ${IDLE_EARLY_READ_MS / 1000} s${idle.bytesPerConnectionAt60s > IDLE_TARGET_BYTES ? ' (over 12 KB)' : ''}, ${kib(idle.bytesPerConnectionAt5s)} KiB 5 s after connecting`
      : '–',
    // Fewer connections (ulimit -n, --idle-connections) are not the issue's load: reported, not judged.
    // Against a deployment, the memory is that of whatever processes --metrics names (none: 0 bytes).
    met:
      idle && idle.connections >= 10_000 && idle.closedWhileIdle === 0 && !conditions.profiled && !remote
        ? idle.bytesPerConnection <= IDLE_TARGET_BYTES
        : null,
  });
  const so = s['scale-out'];
  // Besides its events and PubAcks, a gateway gets a reply to its heads check every 5 s: a bound
  // that grows with the phase, not a fixed 10, which a longer run would exceed.
  const otherAllowed = so ? Math.max(10, 2 * Math.ceil((so.params.warmupS + so.params.durationS + 5) / 5)) : 10;
  const matches = so?.steps.every(
    (step) => step.nats?.every((gateway) => gateway.subscriptionsMatchHosted && Math.abs(gateway.otherMessages) <= otherAllowed) ?? false,
  );
  const allClean = so?.steps.every((step) => isClean(step.result)) ?? false;
  // Another load can make the per-gateway check vacuous (with few sessions every gateway hosts
  // them all), so only the scenario's own load, for at least as long, is judged.
  const soParams = so?.params;
  const scaleOutLoad =
    soParams !== undefined &&
    soParams.connections === SCALE_OUT.connections &&
    soParams.sessions === SCALE_OUT.sessions &&
    soParams.rate === SCALE_OUT.rate &&
    soParams.durationS >= SCALE_OUT.durationS &&
    soParams.warmupS >= SCALE_OUT.warmupS;
  rows.push({
    target:
      'From 1 to 4 gateways at fixed load, CPU per delivered message grows ≤ 1.3×, and each gateway receives only the confirmed events of sessions it hosts',
    measured: so
      ? `${runNote}${so.privateNats ? '' : "(no NATS of the bench's own, so what each gateway received was not measured: not judged) "}${scaleOutLoad ? '' : `(${soParams?.connections} connections, ${soParams?.sessions} sessions, ${soParams?.rate} msg/s for ${soParams?.durationS} s after ${soParams?.warmupS} s, not judged) `}CPU per delivery ${fmt(so.cpuGrowth, 2)}× (Node services), ${fmt(so.cpuGrowthAll, 2)}× with NATS and PG; subscriptions = hosted sessions and no other events: ${matches ? 'yes' : so.privateNats ? 'no' : 'not measured'}; nothing lost, duplicated, out of order or refused at every step: ${allClean ? 'yes' : 'no'}`
      : '–',
    met:
      so && so.cpuGrowth !== null && scaleOutLoad && so.privateNats && asIssue
        ? so.cpuGrowth <= 1.3 && (matches ?? false) && allClean
        : null,
  });
  return rows;
}

export function profileMarkdown(profile: ProfileSummary): string {
  return [
    `#### ${profile.file.split('/').slice(-2).join('/')} (${(profile.busyMs / 1000).toFixed(1)} s busy of ${(profile.totalMs / 1000).toFixed(1)} s)`,
    '',
    table(
      ['area', 'self ms', '% of busy'],
      profile.byArea.map((area) => [area.area, String(area.selfMs), `${area.selfPercent}%`]),
    ),
    '',
    table(
      ['function', 'where', 'self ms', '% of busy'],
      profile.top.map((entry) => [entry.name, entry.where, String(entry.selfMs), `${entry.selfPercent}%`]),
    ),
    '',
  ].join('\n');
}

export function heapProfileMarkdown(profile: HeapProfileSummary): string {
  return [
    `#### ${profile.file.split('/').slice(-2).join('/')} (${profile.megabytes.toFixed(1)} MB allocated in the window)`,
    '',
    table(
      ['area', 'MB allocated', '% of all'],
      profile.byArea.map((area) => [area.area, area.megabytes.toFixed(2), `${area.percent}%`]),
    ),
    '',
    table(
      ['function', 'where', 'MB allocated', '% of all'],
      profile.top.map((entry) => [entry.name, entry.where, entry.megabytes.toFixed(2), `${entry.percent}%`]),
    ),
    '',
  ].join('\n');
}
