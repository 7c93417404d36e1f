import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Server-level connection used to create and drop the per-run databases. */
export const TEST_DATABASE_ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  /** Drops the database, closing whatever connections are still open to it. */
  drop(): Promise<void>;
}

/** Runs `run` on a connection of its own to `databaseUrl`, closed when it settles. */
export async function withPgClient<T>(databaseUrl: string, run: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    return await run(db);
  } finally {
    await db.end();
  }
}

/** The rows of one statement, run on a connection of its own: none is kept open for a test terminating connections to break. */
export async function query<Row extends pg.QueryResultRow>(databaseUrl: string, text: string, values: unknown[] = []): Promise<Row[]> {
  return withPgClient(databaseUrl, async (db) => (await db.query<Row>(text, values)).rows);
}

/** Statements on a database waiting for a lock right now (one a test holds up with a lock of its own). */
export async function lockWaits(databaseUrl: string): Promise<number> {
  const [row] = await query<{ n: number }>(
    databaseUrl,
    "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
  );
  return row?.n ?? 0;
}

/** The server's version as a number (150004 for 15.4). */
export async function serverVersion(): Promise<number> {
  return withAdmin(async (client) => Number((await client.query('show server_version_num')).rows[0].server_version_num));
}

function withAdmin<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  return withPgClient(TEST_DATABASE_ADMIN_URL, run);
}

/**
 * A fresh, empty database for one test file, on the real PostgreSQL server. `options` are the
 * rest of its `create database` statement (`template template0 locale_provider icu …`).
 */
export async function createTestDatabase(label = 'test', options = ''): Promise<TestDatabase> {
  const name = `sb_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  await withAdmin((client) => client.query(`create database "${name}" ${options}`));
  const url = new URL(TEST_DATABASE_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () => withAdmin((client) => client.query(`drop database if exists "${name}" with (force)`)).then(() => undefined),
  };
}

/**
 * Writes `count` messages of `content` from `senderId` straight into a session (seqs 1..count,
 * client_msg_ids `bulk-<seq>`) and moves its `last_seq`: a long history in a moment, for tests of
 * replays. The session must have none yet.
 */
export async function fillHistory(
  databaseUrl: string,
  { sessionId, senderId, content, count }: { sessionId: number; senderId: number; content: string; count: number },
): Promise<void> {
  await withPgClient(databaseUrl, async (db) => {
    await db.query(
      `insert into messages (session_id, seq, sender_id, sender_role, content, client_msg_id)
       select $1, g, $2, 'user', $3, 'bulk-' || g from generate_series(1, $4::int) g`,
      [sessionId, senderId, content, count],
    );
    await db.query('update sessions set last_seq = $2 where id = $1', [sessionId, count]);
  });
}
