/** Why `run` refused a piece of work, which then never started. */
export type ConcurrencyLimitRefusal =
  /** `maxWaiting` pieces of work were already waiting: refused at once. */
  | 'queue_full'
  /** It waited `maxWaitMs` without getting a slot. */
  | 'waited_too_long';

/** Work that `run` refused without starting it (see `reason`). */
export class ConcurrencyLimitError extends Error {
  constructor(readonly reason: ConcurrencyLimitRefusal) {
    super(reason === 'queue_full' ? 'too much work waiting already' : 'waited too long for a turn');
    this.name = 'ConcurrencyLimitError';
  }
}

export interface ConcurrencyLimitOptions {
  /** Pieces of work running at once (at least 1). */
  concurrency: number;
  /** Pieces of work that may wait for a slot; beyond them `run` is refused at once. No bound by default. */
  maxWaiting?: number;
  /** How long a piece of work may wait for a slot before it is refused. No bound by default. */
  maxWaitMs?: number;
}

export interface ConcurrencyLimit {
  /**
   * Runs `work` once fewer than `concurrency` run, in the order `run` was called. Rejects with
   * `ConcurrencyLimitError`, without calling `work`, when `maxWaiting` already wait or after
   * `maxWaitMs` of waiting; otherwise settles as `work` does.
   */
  run<T>(work: () => Promise<T>): Promise<T>;
  /** Pieces of work running now. */
  readonly running: number;
  /** Pieces of work waiting for a slot now. */
  readonly waiting: number;
}

interface Waiter {
  start(): void;
  timer: NodeJS.Timeout | undefined;
}

/** At most `concurrency` pieces of work at once, the others waiting in line, within the bounds given. */
export function createConcurrencyLimit({
  concurrency,
  maxWaiting = Number.POSITIVE_INFINITY,
  maxWaitMs,
}: ConcurrencyLimitOptions): ConcurrencyLimit {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, not ${concurrency}`);
  let running = 0;
  /** In arrival order; one that gives up leaves its place at once. */
  const waiters = new Set<Waiter>();

  const waitForSlot = (): Promise<void> => {
    if (waiters.size >= maxWaiting) return Promise.reject(new ConcurrencyLimitError('queue_full'));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { start: resolve, timer: undefined };
      if (maxWaitMs !== undefined)
        waiter.timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new ConcurrencyLimitError('waited_too_long'));
        }, maxWaitMs);
      waiters.add(waiter);
    });
  };

  /** The slot goes to the first in line, or is freed. */
  const handOver = () => {
    const next = waiters.values().next();
    if (next.done) {
      running--;
      return;
    }
    waiters.delete(next.value);
    clearTimeout(next.value.timer);
    next.value.start();
  };

  return {
    async run<T>(work: () => Promise<T>): Promise<T> {
      if (running < concurrency) running++;
      else await waitForSlot();
      try {
        return await work();
      } finally {
        handOver();
      }
    },
    get running() {
      return running;
    },
    get waiting() {
      return waiters.size;
    },
  };
}
