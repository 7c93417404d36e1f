import { decodeJson, encodeJson } from '@switchboard/bus';
import { busErrorSchema } from '@switchboard/protocol';
import { metric, query, waitFor } from '@switchboard/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support.js';

/**
 * A flood of requests on a small pool. The API and the inbound consumer share the pool, whose
 * waiters are served in arrival order: with a handler started for every request, a batch waited
 * behind all of them (or failed after the pool's 5 s wait as if the database were down, and went
 * to the back of the line again). The API now handles DATABASE_POOL_SIZE - 1 requests at once,
 * leaving the last connection to the consumer.
 */

const POOL_SIZE = 3;
/** What the API may run at once with that pool. */
const API_BOUND = POOL_SIZE - 1;
/** Enough requests to keep the whole pool busy for several seconds. */
const REQUESTS = 600;
/** Sessions of one customer, all open, and as many closed ones of another. */
const SESSIONS_EACH = 100_000;

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness('persistence_api_flood');
});

afterAll(async () => {
  await harness?.close();
});

/**
 * The most of persistence's connections seen running the flood's statement at once, sampled until
 * `stop()`: the same queries (by backend and start time) in two samples in a row. One sample alone
 * can count a query twice: pg_stat_activity copies the backends' entries one after another, and a
 * sampler preempted in the middle (on a busy CI machine) saw one backend still active and, later,
 * the one that took over from it. Counting two samples' sizes only, it did so twice in a row once,
 * with a different query each time; a query that ended cannot be seen running in the next sample.
 * A query over the bound runs for many samples (without the bound, the pool's three ran at once
 * throughout).
 */
function sampleApiQueries(databaseUrl: string) {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'api-flood-sampler' });
  let running = true;
  let max = 0;
  let previous = new Set<string>();
  const done = (async () => {
    await client.connect();
    try {
      while (running) {
        const { rows } = await client.query<{ running: string }>(
          `select pid || '@' || query_start as running from pg_stat_activity
           where datname = current_database() and application_name = 'switchboard-persistence'
             and state = 'active' and query like 'select * from "sessions" where%'`,
        );
        const current = new Set(rows.map((row) => row.running));
        max = Math.max(max, [...current].filter((running) => previous.has(running)).length);
        previous = current;
        // A query over the bound runs for many samples; a pause keeps the sampler from being the load.
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    } finally {
      await client.end();
    }
  })();
  return {
    get max() {
      return max;
    },
    async stop() {
      running = false;
      await done;
    },
  };
}

describe('a flood of API requests on a small pool', () => {
  it('runs at most the bound at once, and the inbound consumer stores and acks a message in the meantime', async () => {
    const persistence = await harness.startPersistence({ DATABASE_POOL_SIZE: String(POOL_SIZE) });
    const [live = 0] = await harness.createSessions(1);
    // Customer 1's sessions are all open, customer 2's all closed: without the index on customer
    // and status (item 207), which this test drops to have a query that takes time, a list of
    // customer 1's closed sessions reads through a hundred thousand index entries to find none.
    await query(harness.database.url, 'drop index sessions_customer_status_newest_idx');
    await query(
      harness.database.url,
      `insert into sessions (customer_id, status)
       select case when g % 2 = 0 then 1 else 2 end, case when g % 2 = 0 then 'open' else 'closed' end
       from generate_series(1, $1::int) g`,
      [2 * SESSIONS_EACH],
    );
    await query(harness.database.url, 'analyze sessions');

    const sampler = sampleApiQueries(harness.database.url);
    let answered = 0;
    /** Requests that ran their query: those answered `unavailable` after the wait limit ran none. */
    let queried = 0;
    let queriedWhenStored = 0;
    let outcomes: string[];
    try {
      const answers = Array.from({ length: REQUESTS }, () =>
        harness.bus
          .request(harness.subjects.persistence('sessions.list'), encodeJson({ customer_id: 1, status: 'closed', limit: 50 }), 60_000)
          .then((data) => {
            answered++;
            const failure = busErrorSchema.safeParse(decodeJson(data));
            if (!failure.success) queried++;
            return failure.success ? failure.data.error.code : 'ok';
          }),
      );
      await waitFor(() => answered >= 10, 30_000, 'the first answers');
      await harness.publish(live, 'during-flood');
      await waitFor(
        async () => {
          queriedWhenStored = queried;
          return (await harness.stored()).some((row) => row.client_msg_id === 'during-flood');
        },
        60_000,
        'the message sent during the flood to be stored',
      );
      await waitFor(() => harness.allAcked(), 10_000, 'the message to be acked');
      outcomes = await Promise.all(answers);
    } finally {
      await sampler.stop();
    }

    // Stored while most of the flood had not run its query (before: once every query had run),
    // and without a failed wait for a connection.
    expect(queriedWhenStored).toBeLessThan(REQUESTS / 2);
    expect(await metric(persistence, 'switchboard_persistence_store_retries_total')).toBe(0);
    // Before: all three connections of the pool.
    expect(sampler.max).toBeLessThanOrEqual(API_BOUND);
    expect(sampler.max).toBeGreaterThan(0);
    // Any that waited longer than a gateway does for its answer is answered `unavailable`.
    expect(outcomes.filter((outcome) => outcome === 'ok').length).toBeGreaterThan(0);
    expect(outcomes.filter((outcome) => outcome !== 'ok' && outcome !== 'unavailable')).toEqual([]);
  }, 120_000);
});
