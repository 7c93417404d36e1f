import { type Kysely, sql } from 'kysely';
import type { PersistenceDatabase } from './schema.js';

/*
 * Repairs of what the database derives from the messages it holds, for the two unique violations
 * no message can cause (`DATABASE_STATE_CONSTRAINTS` in inbound/consumer.ts). Each only moves a
 * counter forward to the rows already there, so it cannot undo anything a replica stores
 * meanwhile: a counter another replica has moved on since is left as it is.
 */

/**
 * Advances each session's `last_seq` that is behind its stored messages (a partial restore: the
 * sessions older than the messages) to its last stored seq. Returns the sessions advanced, with
 * their new `last_seq`. The rows are locked first, one by one in ascending id order, as a batch
 * locks them (store-batch.ts), so the two never deadlock; a row a batch advanced meanwhile is
 * read as the batch left it, and one now past the messages read is not touched.
 */
export async function advanceLastSeqs(
  db: Kysely<PersistenceDatabase>,
  sessionIds: readonly number[],
): Promise<{ id: number; last_seq: number }[]> {
  const { rows } = await sql<{ id: string; last_seq: string }>`
    with locked as (
      select s.id from unnest(${[...sessionIds].sort((a, b) => a - b)}::bigint[]) as u(id) cross join lateral (
        select id from sessions where id = u.id for update
      ) s
    ),
    behind as (
      select l.id, (select max(m.seq) from messages m where m.session_id = l.id) as stored from locked l
    )
    update sessions s set last_seq = b.stored
    from behind b
    where s.id = b.id and b.stored > s.last_seq
    returning s.id, s.last_seq`.execute(db);
  return rows.map((row) => ({ id: Number(row.id), last_seq: Number(row.last_seq) }));
}

/**
 * Advances the identity sequence of `messages.id` to the largest id stored, when it is behind it
 * (a cut-over by logical replication, which copies rows but not sequences). Returns the new
 * value, or undefined when it was not behind.
 */
export async function advanceMessageIds(db: Kysely<PersistenceDatabase>): Promise<number | undefined> {
  const { rows } = await sql<{ advanced: string }>`
    select setval(seq, stored) as advanced
    from (select pg_get_serial_sequence('messages', 'id')::regclass as seq, (select max(id) from messages) as stored) t
    where stored > coalesce(pg_sequence_last_value(seq), 0)`.execute(db);
  const [row] = rows;
  return row ? Number(row.advanced) : undefined;
}
