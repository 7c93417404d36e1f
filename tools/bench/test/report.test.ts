import { describe, expect, it } from 'vitest';
import type { PhaseResult } from '../src/load.js';
import { markdown, reachesShare, targetsOf } from '../src/report.js';
import {
  type Comparison,
  type IdleMemoryResult,
  PERSISTENCE,
  type PersistenceResult,
  RAMP,
  type RampResult,
  ratiosOf,
  SCALE_OUT,
  type ScaleOutStep,
  STEADY,
  TARGET,
} from '../src/scenarios.js';
import { phaseResult } from './phase-result.js';

/** A persistence run that meets its target: everything stored, durable commits, over 10,000/s. */
const persistenceResult = (
  overrides: { live?: Partial<PersistenceResult['live']>; backlog?: Partial<PersistenceResult['backlog']> } = {},
  durability: Record<string, string> = {},
  params: Partial<PersistenceResult['params']> = {},
): PersistenceResult => {
  const batches = { duplicates: 0, meanBatchSize: 100, meanCommitMs: 2, persistenceCpuSeconds: 10, cpuPerMessageUs: 50 };
  return {
    params: { ...PERSISTENCE, ...params },
    durability: { synchronous_commit: 'on', fsync: 'on', wal_sync_method: 'fdatasync', full_page_writes: 'on', ...durability },
    live: {
      published: 200_000,
      publishPerSec: 10_000,
      stored: 200_000,
      sustainedStoredPerSec: 9_000,
      perSecond: [],
      drainSeconds: 1,
      ...batches,
      ...overrides.live,
    },
    backlog: {
      messages: 100_000,
      publishPerSec: 20_000,
      storedPerSec: 30_000,
      stored: 100_000,
      seconds: 4,
      ...batches,
      ...overrides.backlog,
    },
    natsOnly: { subjects: 16, messages: 100_000, consumedPerSec: 50_000 },
  };
};

const ramp = (system: string, saturatedDeliveriesPerSec: number, lowerBound: boolean): RampResult => ({
  system,
  label: system,
  steps: [],
  sustainableRate: 0,
  sustainableLowerBound: false,
  saturatedDeliveriesPerSec,
  lowerBound,
  stopReason: '',
});

describe('reachesShare', () => {
  it('judges exact figures', () => {
    expect(reachesShare(ramp('switchboard', 20_000, false), ramp('ws', 40_000, false), 0.5)).toBe(true);
    expect(reachesShare(ramp('switchboard', 19_999, false), ramp('ws', 40_000, false), 0.5)).toBe(false);
  });

  it("does not pass us on a baseline's lower bound: its real figure may be higher", () => {
    expect(reachesShare(ramp('switchboard', 40_000, false), ramp('ws', 77_906, true), 0.5)).toBe('undetermined');
    expect(reachesShare(ramp('switchboard', 15_000, false), ramp('ws', 51_871, true), 0.5)).toBe(false);
  });

  it('does not fail us on our own lower bound: our real figure may be higher', () => {
    expect(reachesShare(ramp('switchboard', 20_000, true), ramp('socketio', 30_000, false), 1)).toBe('undetermined');
    expect(reachesShare(ramp('switchboard', 30_000, true), ramp('socketio', 30_000, false), 1)).toBe(true);
  });

  it('does not pass us on a baseline with no clean step, which has no figure', () => {
    expect(reachesShare(ramp('switchboard', 10_000, false), ramp('socketio', 0, false), 1)).toBe('undetermined');
    expect(reachesShare(ramp('switchboard', 0, false), ramp('ws', 40_000, false), 0.5)).toBe(false);
  });
});

/** Switchboard's idle-memory figures at `connections`, with `bytesPerConnection` of RSS each. */
const idle = (connections: number, bytesPerConnection: number): IdleMemoryResult => ({
  system: 'switchboard',
  label: 'Switchboard',
  connections,
  sessions: connections / 2,
  settleMs: 135_000,
  fullCollectionsBeforeConnecting: 2,
  closedWhileIdle: 0,
  rssBeforeBytes: 70e6,
  rssAfterBytes: 70e6 + connections * bytesPerConnection,
  bytesPerConnection,
  bytesPerConnectionAt5s: bytesPerConnection,
  bytesPerConnectionAt60s: bytesPerConnection,
  heapBeforeBytes: 0,
  heapAfterBytes: 0,
  heapBytesPerConnection: 0,
  heapBytesPerConnectionAt5s: 0,
  heapBytesPerConnectionAt60s: 0,
  externalBytesPerConnection: 0,
  lastFullCollectionMs: 110_000,
  readings: [],
  setupSeconds: 1,
});

describe('targetsOf', () => {
  const targetLoad = (run = phaseResult(), params: Partial<typeof TARGET> = {}): Comparison => ({
    params: { ...TARGET, ...params, connectionsPlanned: 11_872 },
    runs: [run],
    ratios: {},
  });
  const verdict = (run = phaseResult()) => targetsOf({ scenarios: { target: targetLoad(run) } })[0]?.met;

  it('meets the target load when nothing is lost, duplicated or out of order and latencies are within bounds', () => {
    expect(verdict()).toBe(true);
  });

  it("does not meet the target load when a member's seq went back or skipped", () => {
    expect(verdict(phaseResult({ seqRegressions: 1 }))).toBe(false);
    expect(verdict(phaseResult({ seqGaps: 1 }))).toBe(false);
  });

  it('judges no target on a run shorter than, or scaled apart from, the scenario it stands for', () => {
    for (const params of [{ durationS: 1 }, { warmupS: 0 }, { gateways: 8 }, { rate: 500 }]) {
      const [row] = targetsOf({ scenarios: { target: targetLoad(phaseResult(), params) } });
      expect(row?.met).toBeNull();
      expect(row?.measured).toContain("not the issue's run");
    }
    const persistence = (backlog: number) =>
      targetsOf({ scenarios: { persistence: persistenceResult({ backlog: { messages: backlog, stored: backlog } }, {}, { backlog }) } })[1]
        ?.met;
    expect(persistence(100_000)).toBe(true);
    // A backlog of 5,000 is drained between two samples: a burst, not a sustained rate.
    expect(persistence(5_000)).toBeNull();
    const rampOn = (gateways: number) =>
      targetsOf({
        scenarios: {
          ramp: {
            params: { ...RAMP, gateways },
            systems: [ramp('switchboard', 30_000, false), ramp('ws', 40_000, false), ramp('socketio', 25_000, false)],
          },
        },
      })[2]?.met;
    expect(rampOn(2)).toBe(true);
    // Against Socket.IO's two processes, four gateways are not a like-for-like comparison.
    expect(rampOn(4)).toBeNull();
  });
});

describe('markdown', () => {
  it('gives the ramp share as unknown when both figures are only lower bounds', () => {
    const row = (ws: RampResult) =>
      targetsOf({
        scenarios: { ramp: { params: RAMP, systems: [ramp('switchboard', 30_000, true), ws, ramp('socketio', 25_000, false)] } },
      })[2]?.measured;
    expect(row(ramp('ws', 40_000, true))).toContain('unknown (75% of two lower bounds) of plain ws');
    expect(row(ramp('ws', 40_000, false))).toContain('≥ 75% of plain ws');
  });

  it('lists the scenarios that failed', () => {
    const text = markdown({ scenarios: {} }, [], [], { ramp: 'Error: the stack did not start\n    at main.ts:1' });
    expect(text).toContain('### failed scenarios\n\n- ramp: Error: the stack did not start (the whole error');
    expect(text).not.toContain('main.ts:1');
  });

  it("marks the sustainable rate as a lower bound when the ramp ended on the generator's limit", () => {
    const system = { ...ramp('ws', 77_906, true), sustainableRate: 25_973, sustainableLowerBound: true };
    expect(markdown({ scenarios: { ramp: { params: RAMP, systems: [system] } } }, [], [])).toContain('| plain ws | ≥ 25,973 | ≥ 77,906 |');
  });
});

describe('targetsOf, on what a verdict needs', () => {
  it('does not pass the latency target on an empty delivery histogram, or one far short of the deliveries', () => {
    const empty = { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 };
    const run = phaseResult();
    const judge = (delivery: PhaseResult['latency']['delivery']) =>
      targetsOf({
        scenarios: {
          target: {
            params: { ...TARGET, connectionsPlanned: 11_872 },
            runs: [{ ...run, latency: { ...run.latency, delivery } }],
            ratios: {},
          },
        },
      })[0]?.met;

    expect(judge(run.latency.delivery)).toBe(true);
    expect(judge(empty)).toBe(false);
    expect(judge({ ...run.latency.delivery, count: 1000 })).toBe(false);
  });

  it('does not meet the persistence target when something published was not stored, or commits are not durable', () => {
    const met = (result: PersistenceResult) => targetsOf({ scenarios: { persistence: result } })[1]?.met;

    expect(met(persistenceResult())).toBe(true);
    // The live drain ran out of time.
    expect(met(persistenceResult({ live: { stored: 199_990 } }))).toBe(false);
    // The backlog's drain ran out of time.
    expect(met(persistenceResult({ backlog: { stored: 99_000 } }))).toBe(false);
    expect(met(persistenceResult({}, { fsync: 'off' }))).toBe(false);
    expect(met(persistenceResult({}, { synchronous_commit: 'off' }))).toBe(false);
    expect(targetsOf({ scenarios: { persistence: persistenceResult({}, { fsync: 'off' }) } })[1]?.measured).toContain('fsync=off');
  });

  it('judges no idle-memory target below 10,000 connections', () => {
    const row = (result: IdleMemoryResult) =>
      targetsOf({ scenarios: { 'idle-memory': { connections: result.connections, ulimit: 20_000, systems: [result] } } })[3];

    expect(row(idle(10_000, 9_000))?.met).toBe(true);
    expect(row(idle(10_000, 13_000))?.met).toBe(false);
    // A run scaled down below 10,000 connections (by a low ulimit -n, or --idle-connections).
    expect(row(idle(4_620, 13_000))?.met).toBeNull();
    expect(row(idle(4_620, 13_000))?.measured).toContain('not judged');
  });

  it('judges idle memory on the reading after V8 has given back the burst of connecting, and reports the earlier ones', () => {
    // 15 KiB a minute after connecting, 8 KiB once V8 has collected.
    const result: IdleMemoryResult = { ...idle(10_000, 8_192), bytesPerConnectionAt60s: 15_360, bytesPerConnectionAt5s: 16_384 };
    const row = targetsOf({ scenarios: { 'idle-memory': { connections: 10_000, ulimit: 20_000, systems: [result] } } })[3];

    expect(row?.met).toBe(true);
    expect(row?.measured).toContain(
      '8.0 KiB RSS (0.0 KiB heap) per connection at 10,000, after 135 s idle; 15.0 KiB at 60 s (over 12 KB), 16.0 KiB 5 s after connecting',
    );
    const readings = [
      { idleMs: 5_000, bytesPerConnection: 16_384, heapBytesPerConnection: 9_000, fullCollections: 0 },
      { idleMs: 60_000, bytesPerConnection: 15_360, heapBytesPerConnection: 9_000, fullCollections: 0 },
      { idleMs: 135_000, bytesPerConnection: 8_192, heapBytesPerConnection: 5_000, fullCollections: 2 },
    ];
    const table = markdown(
      { scenarios: { 'idle-memory': { connections: 10_000, ulimit: 20_000, systems: [{ ...result, readings }] } } },
      [],
      [],
    );
    expect(table).toContain('KiB RSS at 60 s');
    expect(table).toContain('| 2, the last by 110 s |');
    expect(table).toContain('| Switchboard | 10,000 |');
  });

  it("gives the CPU ratio to each baseline with the infrastructure each uses too: Switchboard's NATS and PostgreSQL are not left out", () => {
    const cpu = (perDeliveryUs: number, perDeliveryAllUs: number | undefined, usesInfrastructure = true) => ({
      ...phaseResult().cpu,
      perDeliveryUs,
      perDeliveryAllUs,
      usesInfrastructure,
    });
    const runs = [
      phaseResult({ system: 'switchboard', cpu: cpu(140, 235) }),
      // Plain ws uses no infrastructure: its own CPU is all of it.
      phaseResult({ system: 'ws', cpu: cpu(24, undefined, false) }),
      phaseResult({ system: 'socketio', cpu: cpu(100, 110) }),
    ];
    const ratios = ratiosOf(runs);
    expect(ratios.ws).toMatchObject({ cpuPerDelivery: 5.83, cpuPerDeliveryAll: 9.79 });
    expect(ratios.socketio).toMatchObject({ cpuPerDelivery: 1.4, cpuPerDeliveryAll: 2.14 });
    // Socket.IO's Redis not read: no ratio, rather than one against its own processes alone (before: 2.35).
    expect(ratiosOf([runs[0] as PhaseResult, phaseResult({ system: 'socketio', cpu: cpu(100, undefined) })]).socketio).toMatchObject({
      cpuPerDeliveryAll: null,
    });
    const text = markdown({ scenarios: { steady: { params: { ...STEADY, connectionsPlanned: 200 }, runs, ratios } } }, [], []);
    expect(text).toContain('CPU per delivery 5.83× (9.79× with the infrastructure each uses)');
  });

  it('judges no idle memory when connections closed while idle: the memory they held is gone from the figure', () => {
    const row = (result: IdleMemoryResult) =>
      targetsOf({ scenarios: { 'idle-memory': { connections: 10_000, ulimit: 20_000, systems: [result] } } })[3];
    expect(row({ ...idle(10_000, 9_000), closedWhileIdle: 12 })?.met).toBeNull();
    expect(row({ ...idle(10_000, 9_000), closedWhileIdle: 12 })?.measured).toContain('12 connections closed while idle, not judged');
  });

  describe('scale-out', () => {
    const step = (gateways: number, cpu: number, result: Partial<PhaseResult> = {}): ScaleOutStep => ({
      gateways,
      result: phaseResult({ ...result, cpu: { ...phaseResult().cpu, perDeliveryUs: cpu } }),
      nats: Array.from({ length: gateways }, (_, gateway) => ({
        gateway,
        hostedSessions: 200,
        confirmedSubscriptions: 200,
        subscriptionsMatchHosted: true,
        connectionMatchedBy: 'port' as const,
        natsMessagesIn: 6_800,
        expectedConfirmedEvents: 5_200,
        expectedPubAcks: 1_600,
        otherMessages: 0,
        shareOfAllEvents: 1,
        newMessageFramesOut: 10_400,
        sessionsGauge: 200,
      })),
    });
    const row = (steps: ScaleOutStep[], params: Partial<typeof SCALE_OUT> = {}) =>
      targetsOf({
        scenarios: { 'scale-out': { params: { ...SCALE_OUT, ...params }, steps, cpuGrowth: 1.2, cpuGrowthAll: 1.1, privateNats: true } },
      })[4];

    it('meets the target when CPU grows little, each gateway gets its own events, and every step is clean', () => {
      expect(row([step(1, 100), step(2, 110), step(4, 120)])?.met).toBe(true);
    });

    it('does not meet it when a step lost, duplicated or reordered messages', () => {
      expect(row([step(1, 100), step(2, 110), step(4, 120, { lost: { acks: 0, deliveries: 40 } })])?.met).toBe(false);
      expect(row([step(1, 100), step(2, 110, { duplicates: 1 }), step(4, 120)])?.met).toBe(false);
      expect(row([step(1, 100, { outOfOrder: 1 }), step(2, 110), step(4, 120)])?.met).toBe(false);
      expect(row([step(1, 100), step(2, 110), step(4, 120, { errors: 3 })])?.met).toBe(false);
    });

    it("judges no target on a load other than the scenario's", () => {
      const steps = [step(1, 100), step(2, 110), step(4, 120)];
      for (const params of [{ connections: 40 }, { sessions: 1 }, { rate: 50 }, { durationS: 2 }]) {
        expect(row(steps, params)?.met).toBeNull();
        expect(row(steps, params)?.measured).toContain('not judged');
      }
    });

    it("allows a longer run the heads checks' replies of its length, and no more", () => {
      const other = (otherMessages: number) =>
        [step(1, 100), step(2, 110), step(4, 120)].map((each) => ({
          ...each,
          nats: each.nats?.map((gateway) => ({ ...gateway, otherMessages })),
        }));
      // 60 s after 3 s: a reply every 5 s is 13; before, any run over about 55 s failed at 10.
      expect(row(other(13), { durationS: 60 })?.met).toBe(true);
      expect(row(other(40), { durationS: 60 })?.met).toBe(false);
      expect(row(other(11))?.met).toBe(false);
    });

    it('judges no target without a NATS of its own, which alone tells what each gateway received', () => {
      const [, , , , unmeasured] = targetsOf({
        scenarios: {
          'scale-out': {
            params: SCALE_OUT,
            steps: [step(1, 100), step(2, 110), step(4, 120)].map((each) => ({ ...each, nats: undefined })),
            cpuGrowth: 1.2,
            cpuGrowthAll: 1.1,
            privateNats: false,
          },
        },
      });
      expect(unmeasured?.met).toBeNull();
      expect(unmeasured?.measured).toContain('not judged');
    });
  });
});

describe('targetsOf, on how the run was made', () => {
  const results = {
    scenarios: {
      target: { params: { ...TARGET, connectionsPlanned: 11_872 }, runs: [phaseResult()], ratios: {} },
      persistence: persistenceResult(),
      ramp: {
        params: RAMP,
        systems: [ramp('switchboard', 30_000, false), ramp('ws', 40_000, false), ramp('socketio', 25_000, false)],
      },
      'idle-memory': { connections: 10_000, ulimit: 20_000, systems: [idle(10_000, 9_000)] },
    },
  };
  const verdicts = (conditions?: Parameters<typeof targetsOf>[1]) => targetsOf(results, conditions).map((row) => row.met);

  it("judges no saturation on a ramp with other sockets or sessions than the scenario's", () => {
    const resized = { ...results.scenarios, ramp: { ...results.scenarios.ramp, params: { ...RAMP, connections: 2_000, sessions: 1_000 } } };
    const [, , saturation] = targetsOf({ scenarios: resized });
    expect(saturation?.met).toBeNull();
    expect(saturation?.measured).toContain('2000 connections in 1000 sessions, not judged');
  });

  it("judges each target on the issue's run", () => {
    expect(verdicts()).toEqual([true, true, true, true, null]);
  });

  it('judges none on services under a profiler, and only persistence and idle memory on messages of another size', () => {
    const profiled = { contentChars: 100, profiled: true };
    expect(verdicts(profiled)).toEqual([null, null, null, null, null]);
    for (const row of targetsOf(results, profiled).slice(0, 4)) expect(row.measured).toContain('not judged');
    // Persistence publishes messages of its own size, and idle memory sends none.
    const resized = { contentChars: 1_000, profiled: false };
    expect(verdicts(resized)).toEqual([null, true, null, true, null]);
    expect(targetsOf(results, resized)[0]?.measured).toContain('content of 1000 characters, not judged');
  });

  it('judges the load against a deployment on the gateways it was given, and neither saturation nor idle memory', () => {
    // Before, a deployment of one gateway was judged as two, and an idle memory read from no
    // process (no --metrics) as 0 KiB a connection: met.
    expect(verdicts({ contentChars: 100, profiled: false, targetGateways: 2 })).toEqual([true, true, null, null, null]);
    expect(verdicts({ contentChars: 100, profiled: false, targetGateways: 1 })).toEqual([null, true, null, null, null]);
  });
});
