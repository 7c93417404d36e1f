import { describe, expect, it } from 'vitest';
import { markdown, reachesShare, targetsOf } from '../src/report.js';
import { type Comparison, type PersistenceResult, RAMP, type RampResult, TARGET } from '../src/scenarios.js';
import { phaseResult } from './phase-result.js';

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
      targetsOf({
        scenarios: {
          persistence: {
            params: { sessions: 2000, durationS: 20, inFlight: 1000, backlog, contentChars: 100 },
            durability: { synchronous_commit: 'on' },
            live: { sustainedStoredPerSec: 9_000 },
            backlog: { storedPerSec: 30_000 },
          } as unknown as PersistenceResult,
        },
      })[1]?.met;
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
  it("marks the sustainable rate as a lower bound when the ramp ended on the generator's limit", () => {
    const system = { ...ramp('ws', 77_906, true), sustainableRate: 25_973, sustainableLowerBound: true };
    expect(markdown({ scenarios: { ramp: { params: RAMP, systems: [system] } } }, [], [])).toContain('| plain ws | ≥ 25,973 | ≥ 77,906 |');
  });
});
