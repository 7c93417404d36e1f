import type { ColumnType, Generated, Selectable } from 'kysely';

/** Inbound messages that could not be stored, kept for operators. */
export interface DeadLetterTable {
  id: Generated<number>;
  session_id: number | null;
  client_msg_id: string | null;
  reason: string;
  /** The inbound payload as received (JSON text, or the raw text when it was not JSON). */
  payload: string;
  stream_seq: number;
  created_at: ColumnType<Date, never, never>;
}

export type DeadLetterRow = Selectable<DeadLetterTable>;
