import type { Migration } from 'kysely';
import * as sessionsAndMessages from './2026-11-25T01-00-00_sessions-and-messages.js';
import * as sessionsNewestFirstIndex from './2026-11-26T18-00-00_sessions-newest-first-index.js';
import * as sessionsListIndexes from './2026-11-26T19-30-00_sessions-list-indexes.js';
import * as sessionsCustomerStatusIndex from './2026-11-28T14-00-00_sessions-customer-status-index.js';
import * as deadLettersLookupIndex from './2026-11-28T18-00-00_dead-letters-lookup-index.js';

/** Every migration of the persistence service, by name; names sort in the order they apply. */
export const migrations: Record<string, Migration> = {
  '2026-11-25T01-00-00_sessions-and-messages': sessionsAndMessages,
  '2026-11-26T18-00-00_sessions-newest-first-index': sessionsNewestFirstIndex,
  '2026-11-26T19-30-00_sessions-list-indexes': sessionsListIndexes,
  '2026-11-28T14-00-00_sessions-customer-status-index': sessionsCustomerStatusIndex,
  '2026-11-28T18-00-00_dead-letters-lookup-index': deadLettersLookupIndex,
};
