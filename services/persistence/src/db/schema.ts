import type { DeadLetterTable } from './dead-letter.table.js';
import type { MessageTable } from './message.table.js';
import type { SessionTable } from './session.table.js';

export interface PersistenceDatabase {
  sessions: SessionTable;
  messages: MessageTable;
  dead_letters: DeadLetterTable;
}
