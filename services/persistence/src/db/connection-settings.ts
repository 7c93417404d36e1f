import type { ConnectionSettings } from '@switchboard/db';

/**
 * How persistence's connections plan: each statement once per connection (a generic plan), and
 * never by reading a whole table.
 *
 * - `plan_cache_mode = force_generic_plan`: its prepared statements are key lookups whose plan
 *   does not depend on the values, and the batch statement is written so that its one plan suits
 *   every batch size (see store-batch.ts). Planning it for every batch cost PostgreSQL half its
 *   CPU for a batch of one message.
 * - `enable_seqscan = off`: a plan is kept for the life of the connection, and one made while a
 *   table was small (a few hundred sessions, a few messages, with statistics) may read it whole,
 *   per session of the batch: kept as the tables grew, that made a batch of 500 cost 230 ms. With
 *   sequential scans priced out, every lookup is an index lookup, whatever the statistics.
 *   Persistence has no statement that should read a whole table.
 */
export const PERSISTENCE_CONNECTION_SETTINGS: ConnectionSettings = {
  plan_cache_mode: 'force_generic_plan',
  enable_seqscan: 'off',
};
