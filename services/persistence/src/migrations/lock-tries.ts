import { setTimeout as sleep } from 'node:timers/promises';
import { errorCode } from '@switchboard/db';
import { type Kysely, sql } from 'kysely';

/**
 * How the migrations wait for a table's lock: in tries, so that statements held back behind a
 * request for a lock go through between them. Shared by the index migrations; a change here
 * changes every one of them, which are otherwise frozen.
 */

/** How long each try for a lock of `sessions` waits, while the statements after it queue behind it. */
const LOCK_TRY_MS = 2_000;
/** The pause between two tries, in which the statements held back go through. */
const LOCK_PAUSE_MS = 1_000;
/** Tries for the EXCLUSIVE lock before the migration fails (about a minute and a half), to be run again by the next start or hook. */
const LOCK_TRIES = 30;
/**
 * Tries for a lock whose wait holds writes back throughout (a drop, which waits for the reads in
 * flight while the migration holds `sessions`; any lock asked for after `sessions` was taken in
 * the same transaction), pauses included: the migration fails after about 15 s, to be run again
 * by the next start or hook.
 */
export const DROP_TRIES = 5;
/** `lock_not_available`: a try's `lock_timeout`. */
const LOCK_NOT_AVAILABLE = '55P03';

/**
 * Takes `sessions` in EXCLUSIVE mode, which lets reads through and holds every write back at its
 * first lock, before a migration builds or drops an index of it. Without it, a batch storing
 * messages during a build took its row locks' table lock (`for update`, which a build allows) and
 * then waited for the one its `update` needs; a later `drop index` in the same transaction waited
 * for the batch, and PostgreSQL ended one of them as a deadlock: the migration, failing the
 * upgrade's hook at every try while messages were sent, or the batch. The migrations pending run
 * in one transaction, so the first of them that touches the table's indexes takes the lock for all.
 */
export async function lockSessionsForIndexes(db: Kysely<any>): Promise<void> {
  await withLockTries(db, LOCK_TRIES, async () => {
    await sql`lock table sessions in exclusive mode`.execute(db);
  });
}

/**
 * Runs `work`, a statement that waits for a lock (of `sessions`: taking it, or dropping one of its
 * indexes, which takes the whole table), waiting at most LOCK_TRY_MS a try, `tries` times. While a
 * request for a lock waits (behind a transaction left open on the table, or an autovacuum against
 * wraparound, which does not give way), every statement on the table that comes after it waits
 * behind it: a request that waited for good stopped all storage (or all reads), where what it
 * waited for held up one session at most.
 */
export async function withLockTries(db: Kysely<any>, tries: number, work: () => Promise<void>): Promise<void> {
  const { rows } = await sql<{ timeout: string }>`select current_setting('lock_timeout') as timeout`.execute(db);
  for (let attempt = 1; ; attempt++) {
    // A try that fails undoes only itself, and its `lock_timeout`, not the migrations' transaction.
    await sql`savepoint lock_tries`.execute(db);
    try {
      await sql`select set_config('lock_timeout', ${`${LOCK_TRY_MS}ms`}, true)`.execute(db);
      await work();
      await sql`release savepoint lock_tries`.execute(db);
      break;
    } catch (error) {
      await sql`rollback to savepoint lock_tries`.execute(db);
      if (errorCode(error) !== LOCK_NOT_AVAILABLE || attempt >= tries) throw error;
      await sleep(LOCK_PAUSE_MS);
    }
  }
  await sql`select set_config('lock_timeout', ${rows[0]?.timeout ?? '0'}, true)`.execute(db);
}
