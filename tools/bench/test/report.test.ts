import { describe, expect, it } from 'vitest';
import { reachesShare } from '../src/report.js';
import type { RampResult } from '../src/scenarios.js';

const ramp = (system: string, saturatedDeliveriesPerSec: number, lowerBound: boolean): RampResult => ({
  system,
  label: system,
  steps: [],
  sustainableRate: 0,
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
