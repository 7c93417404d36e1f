import type { Logger } from '@switchboard/logging';
import { type Kysely, type Migration, Migrator, sql } from 'kysely';

export interface MigrateOptions {
  /** The service that owns the tables; names its migration bookkeeping tables and its advisory lock. */
  owner: string;
  migrations: Record<string, Migration>;
  logger: Logger;
  /** Work that must also run once at a time across replicas, after migrating (e.g. creating a signing key). */
  afterMigrate?: (db: Kysely<unknown>) => Promise<void>;
}

/**
 * Migrates to the latest version while holding a session-level advisory lock keyed by the owner,
 * so several replicas starting together migrate once, one after the other.
 */
export async function migrateToLatest(db: Kysely<unknown>, { owner, migrations, logger, afterMigrate }: MigrateOptions) {
  const log = logger.child({ module: 'migrate' });
  await db.connection().execute(async (conn) => {
    await sql`select pg_advisory_lock(hashtext(${`switchboard:migrate:${owner}`}))`.execute(conn);
    try {
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
      if (error) throw new Error(`migrations of ${owner} failed`, { cause: error });
      if (afterMigrate) await afterMigrate(conn);
    } finally {
      await sql`select pg_advisory_unlock(hashtext(${`switchboard:migrate:${owner}`}))`.execute(conn);
    }
  });
}
