import type { LatencySummary } from '../src/histogram.js';
import type { PhaseResult } from '../src/load.js';

const latency = (count: number, p50: number, p99: number): LatencySummary => ({
  count,
  p50,
  p90: p99,
  p99,
  p999: p99,
  max: p99,
  mean: p50,
});

/**
 * A phase that passes every check: nothing lost, duplicated or out of order, deliveries keeping
 * up, low latencies, recorded for the 30 s after the warm-up (30/35 of the acks and deliveries).
 */
export function phaseResult(overrides: Partial<PhaseResult> = {}): PhaseResult {
  return {
    label: 'test',
    system: 'switchboard',
    connections: 11_872,
    sessions: 2000,
    targetRate: 1000,
    durationS: 30,
    warmupS: 5,
    sent: 35_000,
    acked: 35_000,
    errors: 0,
    errorCodes: {},
    deliveriesExpected: 210_000,
    delivered: 210_000,
    lost: { acks: 0, deliveries: 0 },
    duplicates: 0,
    outOfOrder: 0,
    seqGaps: 0,
    seqRegressions: 0,
    unknownFrames: 0,
    connectionsClosed: 0,
    throughput: { sendsPerSec: 1000, acksPerSec: 1000, deliveriesPerSec: 6000 },
    latency: { ack: latency(30_000, 2, 10), delivery: latency(180_000, 2, 10), deliveryFromSend: latency(180_000, 2, 10) },
    cpu: {
      serviceSeconds: undefined,
      infraSeconds: undefined,
      infraByName: {},
      perDeliveryUs: undefined,
      perDeliveryAllUs: undefined,
      byProcess: {},
    },
    machine: { busy: undefined, steal: undefined, waitPerRunSecond: {} },
    syscalls: { byProcess: {}, perMessage: {} },
    serverSide: { gatewaySendConfirmMs: undefined, persistenceCommitMs: undefined, persistenceBatchSize: undefined },
    gc: {},
    rssBytes: {},
    generator: { cpuMean: 0.3, cpuMax: 0.4, lagP99Max: 1, lagMax: 2, gcPauseTotalMs: 0, gcPauseMaxMs: 0, bottleneck: false, warnings: [] },
    drainMs: 0,
    ...overrides,
  };
}
