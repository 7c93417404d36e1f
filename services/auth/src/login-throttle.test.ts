import { createDb, type Database, migrateToLatest } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createTestDatabase, type TestDatabase } from '@switchboard/testing';
import { type Kysely, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AuthDatabase } from './db/schema.js';
import { createLoginThrottle, type LoginThrottleOptions, REMEMBERED_REFUSAL_S } from './login-throttle.js';
import { migrations } from './migrations/index.js';

// Against the real PostgreSQL: the counts live there, shared by every auth replica.
let testDatabase: TestDatabase;
let database: Database<AuthDatabase>;
let db: Kysely<AuthDatabase>;

beforeAll(async () => {
  testDatabase = await createTestDatabase('login_throttle');
  database = createDb<AuthDatabase>({ url: testDatabase.url, applicationName: 'login-throttle-test' });
  db = database.db;
  await migrateToLatest(db as Kysely<unknown>, { owner: 'auth', migrations, logger: createLogger({ name: 'test', level: 'silent' }) });
});

afterAll(async () => {
  await database?.destroy();
  await testDatabase?.drop();
});

let keyCounter = 0;
/** A key no other test uses: the tests share one table. */
const freshKey = (label = 'key') => `${label}-${++keyCounter}-${process.pid}`;

function throttle(options: Partial<LoginThrottleOptions> = {}) {
  return createLoginThrottle({ db, scope: 'user', maxFailures: 3, windowMs: 60_000, ...options });
}

/** Makes `times` attempts against the keys, one after another, and answers each one's retry-after. */
async function attempts(times: number, keys: string[], using = throttle()): Promise<number[]> {
  const waits: number[] = [];
  for (let i = 0; i < times; i++) waits.push(await using.attempt(keys));
  return waits;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('createLoginThrottle', () => {
  describe('counting', () => {
    it('lets maxFailures attempts through and refuses the next for the rest of the window, while attempts go on', async () => {
      const key = freshKey();
      expect(await throttle().attempt([])).toBe(0);
      expect(await attempts(3, [key])).toEqual([0, 0, 0]);
      const wait = await throttle().attempt([key]);
      expect(wait).toBeGreaterThan(55);
      expect(wait).toBeLessThanOrEqual(60);
      for (const later of await attempts(2, [key])) expect(later).toBeGreaterThan(55);
    });

    it('counts each key on its own, counts against every key passed at once, and refuses when any key is over', async () => {
      const [a, b, c] = [freshKey(), freshKey(), freshKey()];
      await attempts(3, [a, b]);
      expect(await throttle().attempt([c])).toBe(0);
      expect(await throttle().attempt([a])).toBeGreaterThan(0);
      expect(await throttle().attempt([b])).toBeGreaterThan(0);
      expect(await throttle().attempt([c])).toBe(0);
      expect(await throttle().attempt([c, a])).toBeGreaterThan(0);
    });

    it('counts a key passed twice at once as one attempt', async () => {
      const key = freshKey();
      expect(await attempts(3, [key, key])).toEqual([0, 0, 0]);
      expect(await throttle().attempt([key, key])).toBeGreaterThan(0);
    });

    it('takes any string as a key, NUL and all, and stores only a hash of it', async () => {
      const key = `${freshKey('nul')}\u0000💥`;
      await attempts(3, [key]);
      expect(await throttle().attempt([key])).toBeGreaterThan(0);
      const { rows } = await sql<{ key: string }>`select key from login_failures`.execute(db);
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) expect(row.key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    });

    it('lets at most maxFailures of many concurrent attempts through', async () => {
      // Checking first and counting afterwards let every one of a burst through.
      const key = freshKey();
      const waits = await Promise.all(Array.from({ length: 30 }, () => throttle().attempt([key])));
      expect(waits.filter((wait) => wait === 0)).toHaveLength(3);
      for (const wait of waits.filter((wait) => wait > 0)) expect(wait).toBeGreaterThan(55);
    });
  });

  describe('scopes and replicas', () => {
    it('keeps the user and address scopes apart for the same key', async () => {
      const key = freshKey();
      await attempts(3, [key], throttle({ scope: 'address' }));
      expect(await throttle({ scope: 'address' }).attempt([key])).toBeGreaterThan(0);
      expect(await throttle({ scope: 'user' }).attempt([key])).toBe(0);
    });

    it('shares the counts between throttles on the same database, as between auth replicas', async () => {
      const key = freshKey();
      const [replicaA, replicaB, replicaC] = [throttle(), throttle(), throttle()];
      expect(await replicaA.attempt([key])).toBe(0);
      expect(await replicaB.attempt([key])).toBe(0);
      expect(await replicaC.attempt([key])).toBe(0);
      for (const replica of [replicaA, replicaB, replicaC]) expect(await replica.attempt([key])).toBeGreaterThan(0);
    });

    it('counts concurrent attempts from several replicas exactly', async () => {
      const key = freshKey();
      const replicas = Array.from({ length: 5 }, () => throttle({ maxFailures: 10 }));
      const waits = await Promise.all(replicas.flatMap((replica) => [replica.attempt([key]), replica.attempt([key])]));
      expect(waits).toEqual(Array(10).fill(0));
      const { rows } = await sql<{ failures: number }>`select failures from login_failures where failures = 10`.execute(db);
      expect(rows).toHaveLength(1);
      expect(await replicas[0]?.attempt([key])).toBeGreaterThan(0);
    });
  });

  describe('window expiry', () => {
    it('lets a refused key through again when its window ends, then counts afresh without adding up the old attempts', async () => {
      const key = freshKey();
      const short = throttle({ windowMs: 2_000 });
      await attempts(3, [key], short);
      const wait = await short.attempt([key]);
      expect(wait).toBeGreaterThanOrEqual(1);
      expect(wait).toBeLessThanOrEqual(2);
      await sleep(2_100);
      expect(await attempts(3, [key], short)).toEqual([0, 0, 0]);
      expect(await short.attempt([key])).toBeGreaterThan(0);
    });

    it('keeps the window of the first attempt: later attempts do not extend it', async () => {
      const key = freshKey();
      const short = throttle({ windowMs: 3_000, maxFailures: 2 });
      await short.attempt([key]);
      await sleep(1_500);
      await short.attempt([key]);
      // Refused for what is left of the first attempt's window (about 1.5 s), not for a new 3 s.
      const wait = await short.attempt([key]);
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(2);
      await sleep(1_700);
      expect(await short.attempt([key])).toBe(0);
    });
  });

  describe('refusals remembered in the process', () => {
    it("refuses a key found over its limit again without a statement, for a few seconds only, with the window's wait", async () => {
      const key = freshKey();
      const using = throttle({ windowMs: 60_000 });
      expect(using.refusedFor(key)).toBe(0);
      await attempts(3, [key], using);
      const wait = await using.attempt([key]);
      expect(wait).toBeGreaterThan(50);
      // The Retry-After of the window, not of the few seconds it is remembered.
      expect(using.refusedFor(key)).toBeGreaterThan(50);
      expect(using.refusedFor(freshKey())).toBe(0);
      // Not for the window's rest: a key is over its limit only while attempts are in flight, and a
      // moment of that must not lock, say, an office behind one address out for 15 minutes.
      const later = performance.now() + REMEMBERED_REFUSAL_S * 1000 + 1;
      vi.spyOn(performance, 'now').mockReturnValue(later);
      expect(using.refusedFor(key)).toBe(0);
      vi.restoreAllMocks();
    });
  });

  describe('reset and forgive', () => {
    it('reset clears the key it is given, with its full allowance again, and leaves every other key as it was', async () => {
      const [key, other] = [freshKey(), freshKey()];
      await attempts(3, [key, other]);
      await throttle().reset(key);
      await throttle().reset(freshKey('never-seen'));
      expect(await attempts(3, [key])).toEqual([0, 0, 0]);
      expect(await throttle().attempt([other])).toBeGreaterThan(0);
    });

    it('forgive takes back one attempt from the key it is given, never going below none', async () => {
      const [key, other] = [freshKey(), freshKey()];
      await attempts(3, [key, other]);
      await throttle().forgive(key);
      expect(await throttle().attempt([key])).toBe(0);
      expect(await throttle().attempt([key])).toBeGreaterThan(0);
      expect(await throttle().attempt([other])).toBeGreaterThan(0);
      const fresh = freshKey();
      await throttle().forgive(fresh);
      await throttle().attempt([fresh]);
      for (let i = 0; i < 5; i++) await throttle().forgive(fresh);
      expect(await attempts(3, [fresh])).toEqual([0, 0, 0]);
      expect(await throttle().attempt([fresh])).toBeGreaterThan(0);
    });

    it('never refuses an address whose attempts all succeed, however many', async () => {
      const address = throttle({ scope: 'address' });
      const key = freshKey('address');
      for (let i = 0; i < 10; i++) {
        expect(await address.attempt([key])).toBe(0);
        await address.forgive(key);
      }
      // Still the full allowance for failures.
      expect(await attempts(3, [key], address)).toEqual([0, 0, 0]);
      expect(await address.attempt([key])).toBeGreaterThan(0);
    });
  });

  it('answers an attempt whose deletion of expired windows fails, and tells of the failure', async () => {
    await sql`create function refuse_deletes() returns trigger language plpgsql as $$ begin raise exception 'deletes refused'; end $$`.execute(
      db,
    );
    await sql`create trigger refuse_deletes before delete on login_failures for each statement execute function refuse_deletes()`.execute(
      db,
    );
    // A connection of its own: the sweep runs once a minute per database handle.
    const own = createDb<AuthDatabase>({ url: testDatabase.url, applicationName: 'login-throttle-sweep-test' });
    const failures: unknown[] = [];
    try {
      const using = createLoginThrottle({
        db: own.db,
        scope: 'user',
        maxFailures: 3,
        windowMs: 60_000,
        onSweepError: (error) => failures.push(error),
      });
      const waits = await attempts(4, [freshKey('sweep')], using);
      expect(waits.slice(0, 3)).toEqual([0, 0, 0]);
      expect(waits[3]).toBeGreaterThan(0);
      await vi.waitFor(() => expect(failures).toHaveLength(1));
      expect(String(failures[0])).toMatch(/deletes refused/);
    } finally {
      await sql`drop trigger refuse_deletes on login_failures`.execute(db);
      await sql`drop function refuse_deletes()`.execute(db);
      await own.destroy();
    }
  });
});
