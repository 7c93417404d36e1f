import { createConcurrencyLimit } from '@switchboard/runtime';
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
 * request fails with `ConcurrencyLimitError` (from `@switchboard/runtime`) before any hashing,
 * which the API answers with 503 and `Retry-After`.
 */
export function createPasswordHasher({ concurrency, maxWaiting }: PasswordHasherOptions) {
  const limit = createConcurrencyLimit({ concurrency, maxWaiting });
  return {
    hash: (password: string) => limit.run(() => hashPassword(password)),
    verify: (hash: string | null | undefined, password: string) => limit.run(() => verifyPassword(hash, password)),
    /** Hashes waiting for a slot now. */
    get waiting(): number {
      return limit.waiting;
    },
  };
}
