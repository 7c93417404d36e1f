import type { Logger } from '@switchboard/logging';

/** Contract §1: a process exits within 30 s of SIGTERM. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;

export interface Stoppable {
  stop(): Promise<void>;
}

export interface RunMainOptions {
  logger: Logger;
  start: () => Promise<Stoppable>;
  shutdownTimeoutMs?: number;
}

/**
 * The only place that touches `process` for lifecycle: starts the service, stops it on SIGTERM or
 * SIGINT under a hard timeout, and exits 0 on a clean stop. A failed start or a stop that overruns
 * exits 1.
 */
export function runMain({ logger, start, shutdownTimeoutMs = DEFAULT_SHUTDOWN_TIMEOUT_MS }: RunMainOptions): void {
  let stopping = false;
  const started = start();

  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs: shutdownTimeoutMs }, 'shutdown timed out');
      process.exit(1);
    }, shutdownTimeoutMs);
    timer.unref();
    // A signal during start-up waits for the start to finish, then stops what it started.
    started
      .then((service) => service.stop())
      .then(
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

  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
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
