/**
 * What `npm run status` exits with, so that cron jobs and monitoring can act on it without
 * reading the output. Documented in README.md; a code keeps its meaning once published.
 */
export const ExitCode = {
  /** Every service has at least one instance answering. */
  allAnswered: 0,
  /** At least one service has no instance answering (all of them when NATS has no responder at all). */
  serviceMissing: 1,
  /** NATS could not be reached, or the connection was lost while the services answered, so nothing is known about them. */
  natsUnreachable: 2,
  /** A setting is invalid (`STATUS_TIMEOUT_MS=50`, say): nothing was asked. */
  configInvalid: 3,
  /** Anything else went wrong while asking or printing, so nothing reliable is known about the services. */
  failed: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
