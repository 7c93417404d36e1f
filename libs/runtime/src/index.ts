export {
  type ConcurrencyLimit,
  ConcurrencyLimitError,
  type ConcurrencyLimitOptions,
  type ConcurrencyLimitRefusal,
  createConcurrencyLimit,
} from './concurrency-limit.js';
export { counterTotal, createMetricsRegistry, EVENT_LOOP_MONITORING_PRECISION_MS, PER_HANDLE_METRICS } from './metrics.js';
export { type OpsServer, type OpsServerOptions, type ReadinessChecks, startOpsServer } from './ops-server.js';
export {
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  DEFAULT_START_GRACE_MS,
  exitOnNatsClosed,
  loadConfigOrExit,
  type RunMainOptions,
  runMain,
  type Stoppable,
} from './run-main.js';
export { settlesWithin, valueWithin } from './settles-within.js';
export { startInParts } from './start-in-parts.js';
export { type StartingProbes, serveStartingProbes } from './starting-probes.js';
export { untilAborted } from './until-aborted.js';
export { type WaitWhileUnavailableOptions, waitWhileUnavailable } from './wait-while-unavailable.js';
