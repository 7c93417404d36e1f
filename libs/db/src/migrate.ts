import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '@switchboard/logging';
import { type Kysely, type Migration, Migrator, sql } from 'kysely';
import { isLostOrReadOnly } from './connection-errors.js';

export interface MigrateOptions {
  /** The service that owns the tables; names its migration bookkeeping tables and its advisory lock. */
  owner: string;
  migrations: Record<string, Migration>;
  logger: Logger;
  /** Work that must also run once at a time across replicas, after migrating (e.g. creating a signing key). */
  afterMigrate?: (db: Kysely<unknown>) => Promise<void>;
  /** Ends a wait for another process's lock with its reason: the start given up (a SIGTERM meanwhile). */
  signal?: AbortSignal;
}

/** How often a process waiting for another's migrations asks for the lock again. */
const LOCK_POLL_MS = 250;
/** How often the wait is logged again. */
const LOCK_WAIT_LOG_MS = 30_000;

/**
 * Migrates to the latest version while holding a session-level advisory lock keyed by the owner,
 * so several replicas starting together migrate once, one after the other.
 */
export async function migrateToLatest(db: Kysely<unknown>, { owner, migrations, logger, afterMigrate, signal }: MigrateOptions) {
  const log = logger.child({ module: 'migrate' });
  const lockKey = `switchboard:migrate:${owner}`;
  await db.connection().execute(async (conn) => {
    await takeLock(conn, lockKey, log, signal);
    try {
      const applied = await appliedMigrations(conn, `${owner}_migration`);
      const newer = [...applied].filter((name) => !(name in migrations));
      if (newer.length > 0 && Object.keys(migrations).every((name) => applied.has(name))) {
        // A newer release migrated the schema (its pre-upgrade hook ran, then a rollback, or an old
        // pod restarted mid-rollout). Migrations only add, so this release runs on it as it is.
        log.warn({ newer }, 'the schema holds migrations newer than this release; starting without migrating');
        if (afterMigrate) await afterMigrate(conn);
        return;
      }
      const migrator = new Migrator({
        db: conn,
        provider: { getMigrations: async () => migrations },
        migrationTableName: `${owner}_migration`,
        migrationLockTableName: `${owner}_migration_lock`,
      });
      const { error, results = [] } = await migrator.migrateToLatest();
      for (const result of results) {
        const fields = { migration: result.migrationName, status: result.status };
        if (result.status === 'Error') log.error(fields, 'migration failed');
        else log.info(fields, 'migration applied');
      }
      // A database that cannot take the migration now (read-only after a failover, shutting down,
      // the connection lost) is thrown as it is, so that the caller waits for it as for any other
      // outage (`openWhenReachable`). Wrapped, its code was hidden, and the start failed at once:
      // a crash loop through a failover during a rollout. Not a disk full or out of memory, which
      // the migration itself can cause every time (an index too large to sort): retried without
      // end, each attempt would fill the disk again; those still fail the start.
      if (error) throw isLostOrReadOnly(error) ? error : new Error(`migrations of ${owner} failed`, { cause: error });
      if (afterMigrate) await afterMigrate(conn);
    } finally {
      await sql`select pg_advisory_unlock(hashtext(${lockKey}))`.execute(conn);
    }
  });
}

/**
 * Takes the advisory lock `lockKey`, asking again every LOCK_POLL_MS while another process holds it
 * (another replica migrating, the Helm hook building an index). A blocking `pg_advisory_lock` was
 * one statement for the whole wait, and on a service's own pool, whose statements time out after
 * 10 or 30 s, a long wait failed the start. An abort of `signal` ends the wait at once with its
 * reason; before, a pod stopped while it waited went on asking until its start grace ran out.
 */
async function takeLock(conn: Kysely<unknown>, lockKey: string, log: Logger, signal: AbortSignal | undefined): Promise<void> {
  const started = performance.now();
  let loggedAt = Number.NEGATIVE_INFINITY;
  for (;;) {
    signal?.throwIfAborted();
    const { rows } = await sql<{
      locked: boolean;
    }>`select pg_try_advisory_lock(hashtext(${lockKey})) as locked`.execute(conn);
    if (rows[0]?.locked) return;
    if (performance.now() - loggedAt >= LOCK_WAIT_LOG_MS) {
      loggedAt = performance.now();
      log.info({ waitedMs: Math.round(loggedAt - started) }, 'another process is migrating; waiting for it');
    }
    // Aborted, the pause ends at once, and the loop's first line throws the reason.
    await sleep(LOCK_POLL_MS, undefined, { signal }).catch(() => undefined);
  }
}

/** The names of the migrations recorded as applied in `table`; none when it does not exist yet. */
async function appliedMigrations(conn: Kysely<unknown>, table: string): Promise<Set<string>> {
  const { rows: found } = await sql<{ exists: boolean }>`select to_regclass(${table}) is not null as exists`.execute(conn);
  if (!found[0]?.exists) return new Set();
  const { rows } = await sql<{ name: string }>`select name from ${sql.table(table)}`.execute(conn);
  return new Set(rows.map((row) => row.name));
}
