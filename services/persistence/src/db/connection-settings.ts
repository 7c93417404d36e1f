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
 *   table was small (a thousand sessions, a few messages, with statistics) may read it whole, once
 *   per session of the batch: on a thousand sessions that made a batch of 500 cost 230 ms, and
 *   kept as the tables grow it would cost ever more. With sequential scans priced out, every
 *   lookup is an index lookup, whatever the statistics. No statement reads a whole table: the
 *   session list without a filter did, until it got an index of its own (sessions newest first).
 * - `jit = off`: pricing sequential scans out puts the estimated cost of any statement that
 *   reads a table whole far above `jit_above_cost`, and PostgreSQL then compiled it on every run
 *   (the session list, before its index: 45 of 100 ms on 200,000 sessions; 23 ms without). Key
 *   lookups never gain from JIT.
 */
export const PERSISTENCE_CONNECTION_SETTINGS: ConnectionSettings = {
  plan_cache_mode: 'force_generic_plan',
  enable_seqscan: 'off',
  jit: 'off',
};
