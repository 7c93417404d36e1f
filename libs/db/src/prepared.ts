import { type PostgresPool, type PostgresPoolClient, type RawBuilder, sql } from 'kysely';
import type pg from 'pg';
import { errorCode, isLostOrReadOnly, markConnectFailure } from './connection-errors.js';

/** Settings a connection takes when it opens, by name, e.g. `{ plan_cache_mode: 'force_generic_plan' }`. */
export type ConnectionSettings = Readonly<Record<string, string>>;

const MARK_START = '/* prepared ';
const MARK = /^\/\* prepared ([a-z][a-z0-9_]*) \*\//;

/**
 * What a server says when the named statements it was sent do not match what it holds: a
 * connection pooler in transaction mode (PgBouncer before 1.21) hands each transaction whatever
 * server connection is free, so a statement prepared on one is missing (26000) or already there
 * (42P05) on another.
 */
const PREPARED_STATEMENTS_UNSUPPORTED = new Set(['26000', '42P05']);
/**
 * What a server says when a migration has changed the type of a column a statement prepared before
 * it returns ("cached plan must not change result type", 0A000 from RevalidateCachedQuery), on
 * every run of that statement on that connection until the connection ends. Not any 0A000: a
 * feature the statement uses that the server lacks is refused so on every connection.
 */
const isStalePrepared = (error: unknown) =>
  errorCode(error) === '0A000' && (error as { routine?: unknown }).routine === 'RevalidateCachedQuery';
/** Statements that start and end a transaction, as kysely sends them. */
const BEGIN = /^\s*(begin|start transaction)\b/i;
const END = /^\s*(commit|rollback|end|abort)\b/i;

/**
 * Starts a statement that `createDb`'s pool sends as the named prepared statement `name`:
 * PostgreSQL parses and analyses it once per connection instead of on every run. For hot
 * statements whose text never changes, their values passed as arrays, e.g. persistence's batch
 * insert: ``sql`${prepared('store_batch')} with …` ``.
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

/** SQLSTATEs of a setting the server does not know (42704) or whose value it refuses (22023). */
const SETTING_REFUSED = new Set(['42704', '22023']);

/**
 * `pool` as kysely's PostgresDialect sees it, sending statements marked with `prepared()` by
 * name. Should the server turn out not to keep them (a pooler in transaction mode), the statement
 * is run again unnamed, and so is every marked statement after it.
 *
 * With `settings`, each new connection first takes them (`set_config`, for the session). A
 * prepared statement saves the most under `plan_cache_mode = force_generic_plan`, which plans it
 * once per connection as well as parsing it once. It must then be written so that one plan suits
 * all its values (an index lookup per value rather than a join whose best method depends on how
 * many there are), and the plan must not depend on how large the tables were when it was made: a
 * sequential scan chosen while a table was small is kept as it grows (persistence therefore also
 * turns `enable_seqscan` off).
 */
export function preparingPool(pool: pg.Pool, { settings = {} }: { settings?: ConnectionSettings | undefined } = {}): PostgresPool {
  let naming = true;
  // One wrapper per pg client: kysely keeps a connection object per client it is given.
  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();

  const wrap = (client: pg.PoolClient): PostgresPoolClient => {
    // A connection that failed a statement as lost or timed out is not handed out again: after a
    // query timeout it is still waiting for the answer, and every statement after would queue behind.
    // Nor is one on a read-only server: after a failover that moved the database's address, only a
    // new connection reaches the new primary, and one in use every retry would never idle out.
    let broken = false;
    /** In a transaction, a refused statement has aborted it: running it again could only fail. */
    let inTransaction = false;
    // Kysely passes cursors only when its dialect is given a cursor class, which createDb does not.
    const run = async (text: string, values: readonly unknown[]) => {
      const unnamed = { text, values: values as unknown[] };
      if (BEGIN.test(text)) inTransaction = true;
      else if (END.test(text)) inTransaction = false;
      const name = naming ? preparedName(text) : undefined;
      if (name === undefined) return client.query(unnamed);
      try {
        return await client.query({ ...unnamed, name });
      } catch (error) {
        // Either is refused before it ran, so running it again cannot apply it twice.
        if (isStalePrepared(error)) {
          // pg would not prepare it again on this connection, which is not used again; the next
          // one prepares it anew. Taken for the statement's values, persistence's batches were
          // set aside as dead letters on every connection prepared before the migration.
          broken = true;
          if (inTransaction) throw error;
          return client.query(unnamed);
        }
        if (!PREPARED_STATEMENTS_UNSUPPORTED.has(errorCode(error) ?? '')) throw error;
        naming = false;
        return client.query(unnamed);
      }
    };
    const query = async (text: string, values: readonly unknown[]) => {
      try {
        return await run(text, values);
      } catch (error) {
        if (isLostOrReadOnly(error)) broken = true;
        throw error;
      }
    };
    const release = (destroy?: boolean) => client.release(destroy || broken);
    // As with a pg client handed to kysely directly: pg declares its results more loosely.
    return { query, release } as unknown as PostgresPoolClient;
  };

  return {
    async connect() {
      const client = await pool.connect().catch((error: unknown) => {
        throw markConnectFailure(error);
      });
      let wrapper = wrappers.get(client);
      if (!wrapper) {
        for (const [name, value] of Object.entries(settings)) {
          try {
            await client.query('select set_config($1, $2, false)', [name, value]);
          } catch (error) {
            // A setting the server does not know (plan_cache_mode before PostgreSQL 12) is left
            // out; statements still run.
            if (SETTING_REFUSED.has(errorCode(error) ?? '')) continue;
            // Anything else (the connection lost, the query timeout) ends the connection. Handed
            // out, its first statement waited a second timeout for a server already gone, and it
            // ran without its statement_timeout.
            client.release(true);
            throw markConnectFailure(error);
          }
        }
        wrapper = wrap(client);
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => pool.end(),
  };
}
