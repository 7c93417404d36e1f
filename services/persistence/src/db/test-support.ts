/**
 * What the repository tests share: a migrated database of their own, and what they read of a
 * statement's plan (test only: not built into `dist`).
 */
import { createDb, type Database } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createTestDatabase, type TestDatabase } from '@switchboard/testing';
import { type CompiledQuery, type Kysely, sql } from 'kysely';
import { migratePersistence } from '../app.js';
import { PERSISTENCE_CONNECTION_SETTINGS } from './connection-settings.js';
import type { PersistenceDatabase } from './schema.js';

/**
 * A test database of its own (named after `label`), migrated, and a connection to it as
 * persistence makes one (main.ts: its settings), named `applicationName`.
 */
export async function migratedDatabase(
  label: string,
  applicationName: string,
): Promise<{ database: TestDatabase; persistence: Database<PersistenceDatabase> }> {
  const database = await createTestDatabase(label);
  const persistence = createDb<PersistenceDatabase>({
    url: database.url,
    poolSize: 1,
    applicationName,
    settings: PERSISTENCE_CONNECTION_SETTINGS,
  });
  await migratePersistence(persistence.db, createLogger({ name: applicationName, level: 'warn' }));
  return { database, persistence };
}

/** A node of a plan as `explain (format json)` gives it: the fields the tests read. */
export interface PlanNode {
  'Node Type': string;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

/** Every node of a plan, depth first. */
export function planNodes(root: PlanNode | undefined): PlanNode[] {
  const nodes: PlanNode[] = [];
  const walk = (node: PlanNode) => {
    nodes.push(node);
    for (const child of node.Plans ?? []) walk(child);
  };
  if (root) walk(root);
  return nodes;
}

/**
 * The plan persistence runs for `compiled`, run: the statement prepared, as `pg` sends it, and
 * executed on `db`'s connection (with persistence's `plan_cache_mode = force_generic_plan`,
 * planned without its values). The first node's buffers are those of the whole statement.
 */
export async function preparedPlan<DB>(db: Kysely<DB>, compiled: CompiledQuery): Promise<PlanNode[]> {
  const literal = (value: unknown) => (typeof value === 'number' ? String(value) : `'${String(value).replaceAll("'", "''")}'`);
  return db.connection().execute(async (connection) => {
    await sql`deallocate all`.execute(connection);
    await sql.raw(`prepare planned as ${compiled.sql}`).execute(connection);
    const { rows } = await sql<{ 'QUERY PLAN': { Plan: PlanNode }[] }>`explain (analyze, buffers, format json) ${sql.raw(
      `execute planned(${compiled.parameters.map(literal).join(', ')})`,
    )}`.execute(connection);
    await sql`deallocate planned`.execute(connection);
    return planNodes(rows[0]?.['QUERY PLAN'][0]?.Plan);
  });
}
