import { type PostgresPool, type PostgresPoolClient, type RawBuilder, sql } from 'kysely';
import type pg from 'pg';

const MARK_START = '/* prepared ';
const MARK = /^\/\* prepared ([a-z][a-z0-9_]*) \*\//;

/**
 * Starts a statement that `createDb`'s pool sends as the named prepared statement `name`:
 * PostgreSQL parses and analyses it once per connection instead of on every run (it still plans
 * each run for its values, see `createDb`). For hot statements whose text never changes, their
 * values passed as arrays, e.g. persistence's batch insert: ``sql`${prepared('store_batch')} with …` ``.
 *
 * Such a statement must name the columns it returns (no `*`): PostgreSQL refuses to run a
 * prepared statement whose result columns a migration has changed since it was prepared.
 * Elsewhere (PGlite) the mark is a comment and the statement runs as any other.
 */
export function prepared(name: string): RawBuilder<unknown> {
  if (!MARK.test(`${MARK_START}${name} */`)) throw new Error(`not a statement name: ${name}`);
  return sql.raw(`${MARK_START}${name} */`);
}

/** The statement name a `prepared()` mark gives `text`, if it starts with one. */
export function preparedName(text: string): string | undefined {
  return text.startsWith(MARK_START) ? MARK.exec(text)?.[1] : undefined;
}

/** `pool` as kysely's PostgresDialect sees it, sending statements marked with `prepared()` by name. */
export function preparingPool(pool: pg.Pool): PostgresPool {
  // One wrapper per pg client: kysely keeps a connection object per client it is given.
  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  const wrap = (client: pg.PoolClient): PostgresPoolClient => {
    // Kysely passes cursors only when its dialect is given a cursor class, which createDb does not.
    const query = (text: string, values: readonly unknown[]) => {
      const name = preparedName(text);
      return client.query({ text, values: values as unknown[], ...(name === undefined ? {} : { name }) });
    };
    const release = (destroy?: boolean) => client.release(destroy);
    // As with a pg client handed to kysely directly: pg declares its results more loosely.
    return { query, release } as unknown as PostgresPoolClient;
  };
  return {
    async connect() {
      const client = await pool.connect();
      let wrapper = wrappers.get(client);
      if (!wrapper) {
        wrapper = wrap(client);
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => pool.end(),
  };
}
