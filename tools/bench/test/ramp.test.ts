import { describe, expect, it } from 'vitest';
import { GENERATOR_LIMIT, RAMP, rampSteps } from '../src/scenarios.js';
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
});
