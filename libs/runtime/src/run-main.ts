import type { Logger } from '@switchboard/logging';

/** Contract §1: a process exits within 30 s of SIGTERM. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;

export interface Stoppable {
  stop(): Promise<void>;
}

/**
 * How long a signal that comes during start-up waits for the start to finish before the process
 * exits without it. A start can wait without end (for NATS, which the services wait for forever,
 * or for another replica's migration lock), and a pod deleted meanwhile must still go in time.
 */
export const DEFAULT_START_GRACE_MS = 5_000;

export interface RunMainOptions {
  logger: Logger;
  start: () => Promise<Stoppable>;
  shutdownTimeoutMs?: number;
  startGraceMs?: number;
}

/**
 * The only place that touches `process` for lifecycle: starts the service, stops it on SIGTERM or
 * SIGINT under a hard timeout, and exits 0 on a clean stop. A failed start or a stop that overruns
 * exits 1. A signal during start-up stops what the start made once it finishes, or exits 0 after
 * `startGraceMs` if it has not: what the start opened goes with the process, undrained (a
 * gateway's sockets may already be open). Repeated signals do not cut a stop short.
 */
export function runMain({
  logger,
  start,
  shutdownTimeoutMs = DEFAULT_SHUTDOWN_TIMEOUT_MS,
  startGraceMs = DEFAULT_START_GRACE_MS,
}: RunMainOptions): void {
  let stopping = false;
  const started = start();

  const stop = async () => {
    let graceTimer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<undefined>((resolve) => {
      graceTimer = setTimeout(resolve, startGraceMs, undefined);
    });
    const service = await Promise.race([started, gaveUp]).finally(() => clearTimeout(graceTimer));
    if (service) await service.stop();
    else logger.warn({ waitedMs: startGraceMs }, 'start-up had not finished; exiting without it');
  };

  const shutdown = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'already shutting down');
      return;
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // Not unref'd: a stop left waiting on nothing that keeps the process alive must time out and
    // exit 1, not end the process silently with 0 halfway through.
    setTimeout(() => {
      logger.error({ timeoutMs: shutdownTimeoutMs }, 'shutdown timed out');
      logger.flush();
      process.exit(1);
    }, shutdownTimeoutMs);
    stop().then(
      () => {
        logger.info('stopped');
        logger.flush();
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        logger.flush();
        process.exit(1);
      },
    );
  };

  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: reason }, 'unhandled promise rejection');
    logger.flush();
    process.exit(1);
  });
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, 'uncaught exception');
    logger.flush();
    process.exit(1);
  });

  started.then(
    () => logger.info('started'),
    (error: unknown) => {
      logger.fatal({ err: error }, 'failed to start');
      logger.flush();
      process.exit(1);
    },
  );
}

/** Loads a service's configuration, or prints what is wrong with it and exits 1. */
export function loadConfigOrExit<T>(service: string, load: () => T): T {
  try {
    return load();
  } catch (error) {
    console.error(`${service}: ${(error as Error).message}`);
    process.exit(1);
  }
}
