import { createHash } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { AuthDatabase } from './db/schema.js';

/** Expired windows are deleted at most this often, by whichever replica records a failure. */
export const SWEEP_INTERVAL_MS = 60_000;

export interface LoginThrottleOptions {
  db: Kysely<AuthDatabase>;
  /** Keeps this throttle's keys apart from another's in the shared table: `user`, `address`. */
  scope: string;
  maxFailures: number;
  windowMs: number;
}

/**
 * Counts failed logins per key (a username, a client address) in fixed windows; a key with
 * `maxFailures` failures in its window is blocked until the window ends. The counts live in
 * PostgreSQL (`login_failures`), so every auth replica sees the same ones: three replicas do not
 * allow three times the attempts. Windows follow the database's clock, the same for every replica.
 * Keys are stored as hashes, so the table holds no usernames or addresses, and any string (a NUL
 * included) is a valid key.
 */
export function createLoginThrottle({ db, scope, maxFailures, windowMs }: LoginThrottleOptions) {
  const hashed = (key: string) => createHash('sha256').update(scope).update('\u0000').update(key).digest('base64url');
  const windowLength = sql`make_interval(secs => ${windowMs / 1000})`;
  let sweptAt = 0;

  const sweep = async () => {
    if (Date.now() - sweptAt < SWEEP_INTERVAL_MS) return;
    sweptAt = Date.now();
    await db.deleteFrom('login_failures').where('reset_at', '<=', sql<Date>`now()`).execute();
  };

  return {
    /** Seconds until the last of the blocked keys frees up, or 0 when none is blocked. */
    async retryAfterSeconds(keys: readonly string[]): Promise<number> {
      if (keys.length === 0) return 0;
      const row = await db
        .selectFrom('login_failures')
        .select(sql<string | null>`ceil(extract(epoch from max(reset_at) - now()))`.as('seconds'))
        .where('key', 'in', keys.map(hashed))
        .where('failures', '>=', maxFailures)
        .where('reset_at', '>', sql<Date>`now()`)
        .executeTakeFirst();
      return Math.max(0, Number(row?.seconds ?? 0));
    },

    /** Counts a failure against every key, in one statement: a window that has ended starts afresh. */
    async recordFailure(keys: readonly string[]): Promise<void> {
      if (keys.length === 0) return;
      await sql`
        insert into login_failures (key, failures, reset_at)
        select distinct k, 1, now() + ${windowLength} from unnest(${[...keys].map(hashed)}::text[]) as k
        on conflict (key) do update set
          failures = case when login_failures.reset_at <= now() then 1 else login_failures.failures + 1 end,
          reset_at = case when login_failures.reset_at <= now() then now() + ${windowLength} else login_failures.reset_at end
      `.execute(db);
      await sweep();
    },

    /** Forgets the key's failures (after a successful login). */
    async reset(key: string): Promise<void> {
      await db.deleteFrom('login_failures').where('key', '=', hashed(key)).execute();
    },
  };
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
