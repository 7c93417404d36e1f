/**
 * `promise`'s value, or `undefined` as soon as `signal` aborts, whichever comes first; a rejection
 * of `promise` before the abort rejects it. Its abort listener goes as soon as either happens:
 * a race with a promise that settles only at the stop, in a loop that waits many times before it
 * (a retry every second through an outage), kept one reaction per wait until then.
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    const done = () => signal.removeEventListener('abort', onAbort);
    promise.then(
      (value) => {
        done();
        resolve(value);
      },
      (error: unknown) => {
        done();
        reject(error);
      },
    );
  });
}
