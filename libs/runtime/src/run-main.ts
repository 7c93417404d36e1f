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
  /**
   * `signal` is aborted when SIGTERM or SIGINT comes before the start has finished. A start that
   * listens to it closes what it has opened and rejects with `signal.reason`; one that does not is
   * waited for as `startGraceMs` says.
   */
  start: (signal: AbortSignal) => Promise<Stoppable>;
  shutdownTimeoutMs?: number;
  startGraceMs?: number;
}

/** What a start that ended came to. */
type StartOutcome = { service: Stoppable } | { error: unknown };

/**
 * The only place that touches `process` for lifecycle: starts the service, stops it on SIGTERM or
 * SIGINT under a hard timeout, and exits 0 on a clean stop. A failed start or a stop that overruns
 * exits 1. A signal during start-up aborts the `signal` given to `start`: a start that gives up on
 * it (having closed what it opened) exits 0, as contract §1 asks of every SIGTERM: the process was
 * told to stop, and did (it exited 1, which read as a crash to whatever stopped it while it waited
 * for PostgreSQL, say). One that finishes within `startGraceMs` is stopped as usual; one that
 * neither finishes nor gives up exits 0 after `startGraceMs`: what the start opened goes with the
 * process, undrained (a gateway's sockets may already be open). Repeated signals do not cut a stop
 * short.
 */
export function runMain({
  logger,
  start,
  shutdownTimeoutMs = DEFAULT_SHUTDOWN_TIMEOUT_MS,
  startGraceMs = DEFAULT_START_GRACE_MS,
}: RunMainOptions): void {
  let stopping = false;
  let starting = true;
  const abortStart = new AbortController();
  const started = start(abortStart.signal);
  const outcome: Promise<StartOutcome> = started.then(
    (service) => ({ service }),
    (error: unknown) => ({ error }),
  );

  const exit = (code: number) => exitFlushed(logger, code);

  /** Resolves with the exit code. */
  const stop = async (): Promise<number> => {
    let graceTimer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<undefined>((resolve) => {
      graceTimer = setTimeout(resolve, startGraceMs, undefined);
    });
    const ended = await Promise.race([outcome, gaveUp]).finally(() => clearTimeout(graceTimer));
    if (ended === undefined) {
      logger.warn({ waitedMs: startGraceMs }, 'start-up had not finished; exiting without it');
      return 0;
    }
    if ('error' in ended) {
      if (ended.error === abortStart.signal.reason) {
        logger.warn('start-up was aborted; what it had opened is closed');
        return 0;
      }
      logger.fatal({ err: ended.error }, 'failed to start');
      return 1;
    }
    await ended.service.stop();
    return 0;
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
      exit(1);
    }, shutdownTimeoutMs);
    // Only while starting: a service may keep the signal, and must not see it fire on a plain stop.
    if (starting) abortStart.abort(new Error(`${signal} came during start-up`));
    stop().then(
      (code) => {
        if (code === 0) logger.info('stopped');
        exit(code);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        exit(1);
      },
    );
  };

  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: reason }, 'unhandled promise rejection');
    exit(1);
  });
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, 'uncaught exception');
    exit(1);
  });

  void outcome.then((ended) => {
    starting = false;
    if ('service' in ended) logger.info('started');
    // A start that ends during a shutdown is reported, and the process ended, by the shutdown.
    else if (!stopping) {
      logger.fatal({ err: ended.error }, 'failed to start');
      exit(1);
    }
  });
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

/**
 * The handler for a NATS connection that closed for good (other than in the process's own stop):
 * the client never reopens it, and the process would go on answering /healthz with nothing
 * working. It exits 1, so that the orchestrator starts the service again with a fresh connection.
 */
export function exitOnNatsClosed(logger: Logger): (error: Error | undefined) => void {
  return (error) => {
    logger.fatal({ err: error }, 'the NATS connection closed for good, or lost a subscription for good; exiting to be restarted');
    exitFlushed(logger, 1);
  };
}

/** Ends the process with `code` once what the logger buffers is written. */
function exitFlushed(logger: Logger, code: number): never {
  logger.flush();
  process.exit(code);
}
