import { mkdirSync } from 'node:fs';
import { PGlite, types } from '@electric-sql/pglite';
import { Kysely } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import type { Database } from './create-db.js';

/**
 * PostgreSQL compiled to WebAssembly (PGlite), stored in `dataDir`: the all-in-one mode's
 * database, so that the same migrations and queries run without a PostgreSQL server. One
 * connection, so queries and transactions take turns.
 */
export async function createEmbeddedDb<DB>({ dataDir }: { dataDir: string }): Promise<Database<DB>> {
  mkdirSync(dataDir, { recursive: true });
  // Ids are bigint columns but numbers in JSON, as with the pg driver (see create-db.ts).
  const client = await PGlite.create(dataDir, { parsers: { [types.INT8]: (value: string) => Number(value) } });
  const db = new Kysely<DB>({ dialect: new PGliteDialect(client) });
  return {
    db,
    isHealthy: () => !client.closed,
    destroy: () => db.destroy(),
  };
}
