import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';

export interface SessionTable {
  id: Generated<number>;
  /** The customer's user id (issued by the auth service; no foreign key across services). */
  customer_id: number;
  subject: string | null;
  status: Generated<'open' | 'closed'>;
  /** Seq of the newest message; the next message gets last_seq + 1 under this row's lock. */
  last_seq: Generated<number>;
  created_at: ColumnType<Date, never, never>;
}

export type SessionRow = Selectable<SessionTable>;
export type NewSessionRow = Insertable<SessionTable>;
