import { describe, expect, it } from 'vitest';
import type { PhaseResult } from '../src/load.js';
import { GENERATOR_LIMIT, RAMP, rampSteps, saturationOf } from '../src/scenarios.js';
import { phaseResult } from './phase-result.js';

/** Runs the ramp on steps that are all clean with p99 10 ms, the generator at `generatorCpu(rate)` of a core. */
const rampOn = (generatorCpu: (rate: number) => number) =>
  rampSteps(
    RAMP,
    'test',
    async (rate) => {
      const step = phaseResult({ targetRate: rate });
      return { ...step, generator: { ...step.generator, cpuMean: generatorCpu(rate) } };
    },
    () => undefined,
  );

describe('rampSteps', () => {
  it('credits a clean step within the latency limit on which the generator reached its limit, as a lower bound', async () => {
    const run = await rampOn((rate) => (rate > RAMP.startRate ? GENERATOR_LIMIT + 0.05 : 0.3));

    expect(run.steps.map((step) => step.targetRate)).toEqual([200, 300]);
    expect(run.stopReason).toBe('at 300/s: the load generator used 90% of a core');
    expect(run.sustainableRate).toBe(300);
    expect(run.sustainableLowerBound).toBe(true);
    expect(run.lowerBound).toBe(true);
  });

  it('leaves the step that stopped the ramp on a loss out of the saturation figure, though it delivered more', async () => {
    const run = await rampSteps(
      RAMP,
      'test',
      async (rate) => {
        const step = phaseResult({ targetRate: rate, throughput: { sendsPerSec: rate, acksPerSec: rate, deliveriesPerSec: 6000 + rate } });
        return rate >= 450 ? { ...step, lost: { acks: 0, deliveries: 3 } } : step;
      },
      () => undefined,
    );

    expect(run.steps.map((step) => step.targetRate)).toEqual([200, 300, 450]);
    expect(run.stopReason).toBe('at 450/s: losses, errors, duplicates or out-of-order deliveries');
    expect(run.lowerBound).toBe(false);
    expect(run.saturatedDeliveriesPerSec).toBe(6300);
  });
});

describe('saturationOf', () => {
  const step = (deliveriesPerSec: number, unclean: Partial<PhaseResult> = {}) =>
    phaseResult({ throughput: { sendsPerSec: 0, acksPerSec: 0, deliveriesPerSec }, ...unclean });

  it('is the most deliveries/s of the clean steps only', () => {
    expect(saturationOf([step(5000), step(7000), step(9000, { errors: 1 })])).toBe(7000);
    expect(saturationOf([step(5000), step(9000, { duplicates: 2 }), step(8000, { outOfOrder: 1 })])).toBe(5000);
    expect(saturationOf([step(9000, { lost: { acks: 1, deliveries: 0 } })])).toBe(0);
  });
});
