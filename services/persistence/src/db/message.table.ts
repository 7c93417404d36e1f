import type { Role } from '@switchboard/protocol';
import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';

export interface MessageTable {
  id: Generated<number>;
  session_id: number;
  /** 1, 2, 3, … per session, without gaps: unique (session_id, seq). */
  seq: number;
  sender_id: number;
  sender_role: Role;
  content: string;
  /** Unique per session: a retry with the same id stores nothing new. */
  client_msg_id: string;
  created_at: ColumnType<Date, never, never>;
}

export type MessageRow = Selectable<MessageTable>;
export type NewMessageRow = Insertable<MessageTable>;
