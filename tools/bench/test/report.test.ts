import { describe, expect, it } from 'vitest';
import { markdown, reachesShare, targetsOf } from '../src/report.js';
import { type Comparison, type RampResult, TARGET } from '../src/scenarios.js';
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
  const targetLoad = (run = phaseResult()): Comparison => ({
    params: { ...TARGET, connectionsPlanned: 11_872 },
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
});

describe('markdown', () => {
  it("marks the sustainable rate as a lower bound when the ramp ended on the generator's limit", () => {
    const system = { ...ramp('ws', 77_906, true), sustainableRate: 25_973, sustainableLowerBound: true };
    expect(markdown({ scenarios: { ramp: { systems: [system] } } }, [], [])).toContain('| plain ws | ≥ 25,973 | ≥ 77,906 |');
  });
});
