/** Whether `promise` settles within `ms`; its outcome is left to whoever awaits it. */
export function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return valueWithin(
    promise.then(
      () => true,
      () => true,
    ),
    ms,
    false,
  );
}

/**
 * What `promise` resolves to if it does within `ms`, else `fallback` (also when it rejects): for
 * a figure worth giving only if it comes at once, its promise left to settle on its own.
 */
export async function valueWithin<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<F>((resolve) => {
    timer = setTimeout(resolve, ms, fallback);
  });
  try {
    return await Promise.race([promise.catch(() => fallback), expired]);
  } finally {
    clearTimeout(timer);
  }
}
