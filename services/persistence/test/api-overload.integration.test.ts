import { decodeJson, encodeJson } from '@switchboard/bus';
import { busErrorSchema } from '@switchboard/protocol';
import { waitFor } from '@switchboard/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support.js';

/**
 * Requests wait in line for one of the API's `DATABASE_POOL_SIZE - 1` turns. They waited as long
 * as a gateway waits for its answer (5 s), so in a lasting overload the requests let through had
 * used their caller's time up in line: each ran its queries for nobody, and the callers heard
 * nothing. A request now waits half of that, and is then answered `unavailable` while its caller
 * still listens.
 */

const POOL_SIZE = 3;
const API_BOUND = POOL_SIZE - 1;
const REQUESTS = 6;
/** Less than a gateway's 5 s: an answer the request gets after this is one a gateway would not hear. */
const CALLER_TIMEOUT_MS = 4_000;

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness('persistence_api_overload');
});

afterAll(async () => {
  await harness?.close();
});

describe('requests waiting for a turn while every turn is taken', () => {
  it('are answered unavailable while their callers still wait', async () => {
    await harness.startPersistence({ DATABASE_POOL_SIZE: String(POOL_SIZE) });
    const [session = 0] = await harness.createSessions(1);
    const get = (timeoutMs: number) =>
      harness.bus.request(harness.subjects.persistence('sessions.get'), encodeJson({ session_id: session }), timeoutMs);
    // Answered first, all at once: the API is there, with every connection it uses open (a new
    // one prepares statements of the sessions table, which the lock below would hold up).
    for (const answer of await Promise.all(Array.from({ length: REQUESTS }, () => get(10_000))))
      expect(decodeJson(answer)).toMatchObject({ session: { id: session } });
    // Every query of the sessions table waits for this lock: the first requests hold the API's
    // turns, and the rest wait in line.
    const locker = new pg.Client({ connectionString: harness.database.url });
    await locker.connect();
    let outcomes: string[];
    try {
      await locker.query('begin');
      await locker.query('lock table sessions in access exclusive mode');
      const answers = Array.from({ length: REQUESTS }, () =>
        get(CALLER_TIMEOUT_MS).then(
          (data) => {
            const failure = busErrorSchema.safeParse(decodeJson(data));
            return failure.success ? failure.data.error.code : 'ok';
          },
          () => 'no answer',
        ),
      );
      // The requests holding a turn run their query against the lock until it is let go.
      await waitFor(
        async () =>
          (
            await locker.query(
              `select 1 from pg_stat_activity
               where datname = current_database() and application_name = 'switchboard-persistence' and wait_event_type = 'Lock'`,
            )
          ).rowCount === API_BOUND,
        10_000,
        'the requests holding a turn to wait for the lock',
      );
      outcomes = await Promise.all(answers);
    } finally {
      await locker.query('rollback').catch(() => undefined);
      await locker.end();
    }
    // Before: every one of them went unanswered.
    expect(outcomes.filter((outcome) => outcome === 'unavailable')).toHaveLength(REQUESTS - API_BOUND);
    expect(outcomes.filter((outcome) => outcome === 'no answer')).toHaveLength(API_BOUND);
  }, 60_000);
});
