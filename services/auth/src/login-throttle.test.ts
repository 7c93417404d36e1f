import { createDb, type Database, migrateToLatest } from '@switchboard/db';
import { createLogger } from '@switchboard/logging';
import { createTestDatabase, type TestDatabase } from '@switchboard/testing';
import { type Kysely, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthDatabase } from './db/schema.js';
import { createLoginThrottle, type LoginThrottleOptions } from './login-throttle.js';
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

async function fail(times: number, keys: string[], using = throttle()) {
  for (let i = 0; i < times; i++) await using.recordFailure(keys);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('createLoginThrottle', () => {
  describe('blocking', () => {
    it('blocks nothing that has not failed, nor below maxFailures', async () => {
      const key = freshKey();
      expect(await throttle().retryAfterSeconds([key])).toBe(0);
      expect(await throttle().retryAfterSeconds([])).toBe(0);
      await fail(2, [key]);
      expect(await throttle().retryAfterSeconds([key])).toBe(0);
    });

    it('blocks a key for the rest of its window once it reaches maxFailures, and while failures go on', async () => {
      const key = freshKey();
      await fail(3, [key]);
      const wait = await throttle().retryAfterSeconds([key]);
      expect(wait).toBeGreaterThan(55);
      expect(wait).toBeLessThanOrEqual(60);
      await fail(2, [key]);
      expect(await throttle().retryAfterSeconds([key])).toBeGreaterThan(55);
    });

    it('counts each key on its own, records against every key passed at once, and blocks when any key asked about is', async () => {
      const [a, b, c] = [freshKey(), freshKey(), freshKey()];
      await fail(3, [a, b]);
      await fail(1, [c]);
      expect(await throttle().retryAfterSeconds([a])).toBeGreaterThan(0);
      expect(await throttle().retryAfterSeconds([b])).toBeGreaterThan(0);
      expect(await throttle().retryAfterSeconds([c])).toBe(0);
      expect(await throttle().retryAfterSeconds([c, a])).toBeGreaterThan(0);
    });

    it('counts a key passed twice at once as one failure', async () => {
      const key = freshKey();
      await fail(2, [key, key]);
      expect(await throttle().retryAfterSeconds([key])).toBe(0);
    });

    it('takes any string as a key, NUL and all, and stores only a hash of it', async () => {
      const key = `${freshKey('nul')}\u0000💥`;
      await fail(3, [key]);
      expect(await throttle().retryAfterSeconds([key])).toBeGreaterThan(0);
      const { rows } = await sql<{ key: string }>`select key from login_failures`.execute(db);
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) expect(row.key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    });
  });

  describe('scopes and replicas', () => {
    it('keeps the user and address scopes apart for the same key', async () => {
      const key = freshKey();
      await fail(3, [key], throttle({ scope: 'address' }));
      expect(await throttle({ scope: 'address' }).retryAfterSeconds([key])).toBeGreaterThan(0);
      expect(await throttle({ scope: 'user' }).retryAfterSeconds([key])).toBe(0);
    });

    it('shares the counts between throttles on the same database, as between auth replicas', async () => {
      const key = freshKey();
      const [replicaA, replicaB, replicaC] = [throttle(), throttle(), throttle()];
      await replicaA.recordFailure([key]);
      await replicaB.recordFailure([key]);
      expect(await replicaC.retryAfterSeconds([key])).toBe(0);
      await replicaC.recordFailure([key]);
      for (const replica of [replicaA, replicaB, replicaC]) expect(await replica.retryAfterSeconds([key])).toBeGreaterThan(0);
    });

    it('counts concurrent failures from several replicas exactly', async () => {
      const key = freshKey();
      const replicas = Array.from({ length: 5 }, () => throttle({ maxFailures: 10 }));
      await Promise.all(replicas.flatMap((replica) => [replica.recordFailure([key]), replica.recordFailure([key])]));
      const { rows } = await sql<{ failures: number }>`select failures from login_failures where failures = 10`.execute(db);
      expect(rows).toHaveLength(1);
      expect(await replicas[0]?.retryAfterSeconds([key])).toBeGreaterThan(0);
    });
  });

  describe('window expiry', () => {
    it('frees a blocked key when its window ends, then counts afresh without adding up the old failures', async () => {
      const key = freshKey();
      const short = throttle({ windowMs: 2_000 });
      await fail(3, [key], short);
      const wait = await short.retryAfterSeconds([key]);
      expect(wait).toBeGreaterThanOrEqual(1);
      expect(wait).toBeLessThanOrEqual(2);
      await sleep(2_100);
      expect(await short.retryAfterSeconds([key])).toBe(0);
      await fail(2, [key], short);
      expect(await short.retryAfterSeconds([key])).toBe(0);
      await fail(1, [key], short);
      expect(await short.retryAfterSeconds([key])).toBeGreaterThan(0);
    });

    it('keeps the window of the first failure: later failures do not extend it', async () => {
      const key = freshKey();
      const short = throttle({ windowMs: 3_000, maxFailures: 2 });
      await short.recordFailure([key]);
      await sleep(1_500);
      await short.recordFailure([key]);
      // Blocked for what is left of the first failure's window (about 1.5 s), not for a new 3 s.
      const wait = await short.retryAfterSeconds([key]);
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(2);
      await sleep(1_700);
      expect(await short.retryAfterSeconds([key])).toBe(0);
    });
  });

  describe('reset', () => {
    it('clears the key it is given, with its full allowance again, and leaves every other key as it was', async () => {
      const [key, other] = [freshKey(), freshKey()];
      await fail(3, [key, other]);
      await throttle().reset(key);
      await throttle().reset(freshKey('never-seen'));
      expect(await throttle().retryAfterSeconds([key])).toBe(0);
      expect(await throttle().retryAfterSeconds([other])).toBeGreaterThan(0);
      await fail(2, [key]);
      expect(await throttle().retryAfterSeconds([key])).toBe(0);
    });
  });
});
