import argon2 from 'argon2';

/**
 * argon2id with OWASP's recommended minimum cost (19 MiB, 2 passes, 1 lane). The parameters are
 * stored in each hash, so raising them later only affects new hashes.
 */
const HASH_OPTIONS = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, HASH_OPTIONS);
}

/** A hash of nothing anyone knows, verified against when the user does not exist so both cases take as long. */
const decoyHash = hashPassword(`decoy-${Math.random()}`);

export async function verifyPassword(hash: string | null | undefined, password: string): Promise<boolean> {
  if (!hash) {
    await argon2.verify(await decoyHash, password);
    return false;
  }
  try {
    return await argon2.verify(hash, password);
  } catch {
    return false;
  }
}

/** More password hashes wait than the service takes: the request is refused before it costs anything. */
export class HashingBusyError extends Error {
  constructor() {
    super('too many password checks at once');
  }
}

export interface PasswordHasherOptions {
  /** Hashes computed at once. */
  concurrency: number;
  /** Hashes that may wait for one of those; beyond them a request is refused at once. */
  maxWaiting: number;
}

export type PasswordHasher = ReturnType<typeof createPasswordHasher>;

/**
 * Hashing and checking passwords, `concurrency` at a time and at most `maxWaiting` waiting. Each
 * argon2id hash costs 19 MiB and tens of milliseconds of a core: without a bound, a burst of
 * logins that the throttles let through (successful ones cost an address nothing) queued every
 * later login behind it for as long as it lasted, and held memory for each. Beyond the bound a
 * request fails with `HashingBusyError`, which the API answers with 503 and `Retry-After`.
 */
export function createPasswordHasher({ concurrency, maxWaiting }: PasswordHasherOptions) {
  let running = 0;
  const waiting: (() => void)[] = [];

  const run = async <T>(work: () => Promise<T>): Promise<T> => {
    if (running < concurrency) running++;
    else if (waiting.length < maxWaiting) await new Promise<void>((resolve) => waiting.push(resolve));
    else throw new HashingBusyError();
    try {
      return await work();
    } finally {
      // The slot goes to the next in line, or is freed.
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };

  return {
    hash: (password: string) => run(() => hashPassword(password)),
    verify: (hash: string | null | undefined, password: string) => run(() => verifyPassword(hash, password)),
    /** Hashes waiting for a slot now. */
    get waiting(): number {
      return waiting.length;
    },
  };
}
