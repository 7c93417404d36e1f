import { createHash } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { AuthDatabase } from './db/schema.js';

/** Expired windows are deleted at most this often, by whichever replica counts an attempt. */
export const SWEEP_INTERVAL_MS = 60_000;

export interface LoginThrottleOptions {
  db: Kysely<AuthDatabase>;
  /** Keeps this throttle's keys apart from another's in the shared table: `user`, `address`. */
  scope: string;
  maxFailures: number;
  windowMs: number;
  /** Told when the occasional deletion of expired windows fails (the attempt is answered all the same). */
  onSweepError?: (error: unknown) => void;
}

/** Keys each throttle remembers as refused, at most: beyond, the oldest are forgotten (and asked about again). */
export const MAX_REMEMBERED_REFUSALS = 10_000;
/**
 * How long a refusal is remembered, at most: a key can be over its limit only for a moment (its
 * attempts in flight, each taken back once it succeeds), and remembered to the window's end such
 * a moment would lock an office's logins out for the rest of it. A flood still costs its key one
 * round of statements per this many seconds.
 */
export const REMEMBERED_REFUSAL_S = 5;

/** When each database's expired windows were last deleted: one sweep serves every throttle (scope) on it. */
const sweptAt = new WeakMap<Kysely<AuthDatabase>, number>();

/** Deletes every scope's expired windows, at most once per SWEEP_INTERVAL_MS per database. */
async function sweepExpired(db: Kysely<AuthDatabase>): Promise<void> {
  if (Date.now() - (sweptAt.get(db) ?? 0) < SWEEP_INTERVAL_MS) return;
  sweptAt.set(db, Date.now());
  await db.deleteFrom('login_failures').where('reset_at', '<=', sql<Date>`now()`).execute();
}

/**
 * Counts login attempts per key (a username, a client address) in fixed windows: `maxFailures`
 * attempts are let through in a window, the next are refused until the window ends.
 *
 * An attempt is counted before its password is checked, never after: argon2 takes a while, and
 * counting only the failures that have come back would let a burst of concurrent requests all
 * pass the check before the first one failed (200 parallel guesses instead of `maxFailures`).
 * The count is one atomic upsert, so concurrent requests, on any replica, each get a distinct
 * number. A login that then succeeds, or that another key refused, takes its count back
 * (`reset`, `forgive`); a failed one keeps it.
 *
 * The counts live in PostgreSQL (`login_failures`), so every auth replica sees the same ones, and
 * windows follow the database's clock. Keys are stored as hashes, so the table holds no usernames
 * or addresses, and any string (a NUL included) is a valid key.
 *
 * A key found over its limit is remembered in the process for a few seconds (`refusedFor`,
 * REMEMBERED_REFUSAL_S): a client refused once is refused again without a statement meanwhile.
 * Counted and then forgiven, each of its requests cost several writes, and a blocked address
 * flooding logins could still take the pool's connections from everyone else's.
 */
export function createLoginThrottle({ db, scope, maxFailures, windowMs, onSweepError = () => undefined }: LoginThrottleOptions) {
  const hashed = (key: string) => createHash('sha256').update(scope).update('\u0000').update(key).digest('base64url');
  const windowLength = sql`make_interval(secs => ${windowMs / 1000})`;
  // Not awaited: a login must not wait for, or fail with, housekeeping. Expired rows left by a
  // failed sweep count for nothing and go with the next one.
  const sweep = () => void sweepExpired(db).catch(onSweepError);
  /**
   * Keys found over their limit, oldest first: until when the refusal is remembered, and when the
   * key's window ends (the Retry-After), on `performance.now()`.
   */
  const refused = new Map<string, { until: number; windowEnds: number }>();
  const remember = (key: string, seconds: number) => {
    refused.delete(key);
    const now = performance.now();
    refused.set(key, { until: now + Math.min(seconds, REMEMBERED_REFUSAL_S) * 1000, windowEnds: now + seconds * 1000 });
    for (const oldest of refused.keys()) {
      if (refused.size <= MAX_REMEMBERED_REFUSALS) break;
      refused.delete(oldest);
    }
  };

  return {
    /** Seconds until a key this process found over its limit a moment ago frees up, or 0: asks nothing of the database. */
    refusedFor(key: string): number {
      const refusal = refused.get(key);
      if (refusal === undefined) return 0;
      const now = performance.now();
      if (now < refusal.until) return Math.max(1, Math.ceil((refusal.windowEnds - now) / 1000));
      refused.delete(key);
      return 0;
    },

    /**
     * Counts an attempt against every key in one statement (a window that has ended starts
     * afresh) and answers the seconds until the last key over `maxFailures` frees up, or 0 when
     * none is: then the attempt may go ahead.
     */
    async attempt(keys: readonly string[]): Promise<number> {
      if (keys.length === 0) return 0;
      const { rows } = await sql<{ seconds: string | null }>`
        with counted as (
          insert into login_failures (key, failures, reset_at)
          select distinct k, 1, now() + ${windowLength} from unnest(${[...keys].map(hashed)}::text[]) as k
          on conflict (key) do update set
            failures = case when login_failures.reset_at <= now() then 1 else login_failures.failures + 1 end,
            reset_at = case when login_failures.reset_at <= now() then excluded.reset_at else login_failures.reset_at end
          returning failures, reset_at
        )
        select ceil(extract(epoch from max(reset_at) - now())) as seconds from counted where failures > ${maxFailures}
      `.execute(db);
      sweep();
      const seconds = rows[0]?.seconds;
      if (seconds == null) return 0;
      const retryAfter = Math.max(1, Number(seconds));
      // One key alone is known to be the one over the limit; several share the answer.
      if (keys.length === 1 && keys[0] !== undefined) remember(keys[0], retryAfter);
      return retryAfter;
    },

    /** Takes one attempt back from the key, not below 0 (a success from a shared address, a refused attempt). */
    async forgive(key: string): Promise<void> {
      await sql`update login_failures set failures = greatest(failures - 1, 0) where key = ${hashed(key)}`.execute(db);
    },

    /** Forgets the key's attempts (a successful login's username). */
    async reset(key: string): Promise<void> {
      await db.deleteFrom('login_failures').where('key', '=', hashed(key)).execute();
    },
  };
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
