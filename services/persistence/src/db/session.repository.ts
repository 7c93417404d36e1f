import type { Session, SessionWithSeq } from '@switchboard/protocol';
import { type Kysely, sql } from 'kysely';
import type { PersistenceDatabase } from './schema.js';
import type { SessionRow } from './session.table.js';

export const toSession = (row: SessionRow): Session => ({
  id: row.id,
  customer_id: row.customer_id,
  status: row.status,
  subject: row.subject,
  created_at: row.created_at.toISOString(),
});

const toSessionWithSeq = (row: SessionRow): SessionWithSeq => ({ ...toSession(row), last_seq: row.last_seq });

/** At most `max` sessions per customer created within `windowMs`. */
export interface SessionCreateLimit {
  max: number;
  windowMs: number;
}

const windowLength = (limit: SessionCreateLimit) => sql`make_interval(secs => ${limit.windowMs / 1000})`;

/**
 * Creates a session, unless its customer already created `limit.max` within the window: then
 * `undefined`. One statement, which counts at most `max` of the customer's newest sessions on the
 * `(customer_id, created_at desc, id desc)` index. Concurrent creates by one customer may each see
 * the count below the limit, so it can be passed by as many as are created at the same moment.
 */
export async function insertSession(
  db: Kysely<PersistenceDatabase>,
  session: { customerId: number; subject: string | null },
  limit: SessionCreateLimit,
): Promise<Session | undefined> {
  const { rows } = await sql<SessionRow>`
    insert into sessions (customer_id, subject)
    select ${session.customerId}::bigint, ${session.subject}::text
    where (
      select count(*) from (
        select 1 from sessions
        where customer_id = ${session.customerId}::bigint and created_at > now() - ${windowLength(limit)}
        limit ${limit.max}
      ) as recent
    ) < ${limit.max}
    returning *
  `.execute(db);
  return rows[0] && toSession(rows[0]);
}

/**
 * After `insertSession` refused a customer: milliseconds until it may create a session again, when
 * the `max`-th newest of its sessions in the window leaves the window (0 if one already has).
 */
export async function sessionCreateRetryAfterMs(
  db: Kysely<PersistenceDatabase>,
  customerId: number,
  limit: SessionCreateLimit,
): Promise<number> {
  const { rows } = await sql<{ ms: number }>`
    select greatest(0, ceil(extract(epoch from created_at + ${windowLength(limit)} - clock_timestamp()) * 1000))::float8 as ms
    from sessions
    where customer_id = ${customerId}::bigint and created_at > now() - ${windowLength(limit)}
    order by created_at desc, id desc
    offset ${limit.max - 1} limit 1
  `.execute(db);
  return rows[0]?.ms ?? 0;
}

export async function findSession(db: Kysely<PersistenceDatabase>, id: number): Promise<SessionWithSeq | undefined> {
  const row = await db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toSessionWithSeq(row);
}

/** The last seq of each of these sessions that exists. */
export async function findLastSeqs(db: Kysely<PersistenceDatabase>, ids: readonly number[]): Promise<{ id: number; last_seq: number }[]> {
  // One statement text whatever the number of ids (an `in` list would be a new one per length).
  const { rows } = await sql<{ id: number; last_seq: number }>`select id, last_seq from sessions where id = any(${ids}::bigint[])`.execute(
    db,
  );
  return rows;
}

export interface SessionListFilter {
  status?: 'open' | 'closed' | undefined;
  customerId?: number | undefined;
  /** Only sessions listed after this one (older, or as old with a lower id): the next page. */
  beforeId?: number | undefined;
  limit: number;
}

/**
 * The statement of `listSessions`. Without a filter it reads the `(created_at desc, id desc)`
 * index and stops after `limit` rows; by status or customer, the index of that column, which
 * orders the rest the same way. A page after `beforeId` starts in the index where that session
 * is: `(created_at, id) <` the session's, after an equality on the filter's column, is where the
 * scan begins. (Led by that column too, the comparison had it go the other way from the index's
 * `created_at desc`, and the scan began at the newest session of the status and walked every one
 * up to the cursor.) With a cursor, the status is written into the statement: persistence plans
 * each statement once for any value, and without knowing the status such a plan read the index of
 * all sessions from the cursor, skipping the other status, however rare the one asked for.
 */
export function listSessionsQuery(db: Kysely<PersistenceDatabase>, filter: SessionListFilter) {
  let query = db.selectFrom('sessions').selectAll().orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filter.limit);
  const { status, customerId, beforeId } = filter;
  if (status) query = beforeId === undefined ? query.where('status', '=', status) : query.where(sql<boolean>`status = ${sql.lit(status)}`);
  if (customerId !== undefined) query = query.where('customer_id', '=', customerId);
  if (beforeId !== undefined) {
    // A cursor that names no session (or, for a customer, none of theirs) lists nothing: a
    // comparison with null is never true.
    const cursorAt =
      customerId === undefined
        ? sql`(select created_at from sessions where id = ${beforeId})`
        : sql`(select created_at from sessions where id = ${beforeId} and customer_id = ${customerId})`;
    query = query.where(sql<boolean>`(created_at, id) < (${cursorAt}, ${beforeId}::bigint)`);
  }
  return query;
}

/** Newest first, and whether more come after them (`limit` + 1 are read). */
export async function listSessions(
  db: Kysely<PersistenceDatabase>,
  filter: SessionListFilter,
): Promise<{ sessions: SessionWithSeq[]; hasMore: boolean }> {
  const rows = await listSessionsQuery(db, { ...filter, limit: filter.limit + 1 }).execute();
  return { sessions: rows.slice(0, filter.limit).map(toSessionWithSeq), hasMore: rows.length > filter.limit };
}
