import { generateKeyPairSync } from 'node:crypto';
import { createLogger } from '@switchboard/logging';
import type { JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { createKeyRing } from './key-ring.js';

const CACHE_MS = 1_000;
const READ_WAIT_MS = 50;

const jwk = (kid: string): JWK => ({ kty: 'OKP', crv: 'Ed25519', x: `x-${kid}`, kid, alg: 'EdDSA', use: 'sig' });
const kids = (set: { keys: JWK[] }) => set.keys.map((key) => key.kid);

/** A ring over a stand-in for the database, with a clock the test moves. */
function ringOver(initial: JWK[], pinned: JWK[] = [jwk('active')], { initialReadMs = 0 } = {}) {
  const database = { recorded: initial, reads: 0, failing: false, hang: undefined as Promise<void> | undefined };
  // The initial read began at 0 and took `initialReadMs`.
  let time = initialReadMs;
  const ring = createKeyRing({
    active: { kid: 'active', alg: 'EdDSA', privateKey: generateKeyPairSync('ed25519').privateKey },
    pinned,
    initial,
    initialReadStartedAt: 0,
    readRecorded: async () => {
      database.reads += 1;
      const answer = database.recorded;
      if (database.hang) await database.hang;
      if (database.failing) throw new Error('connection refused');
      return answer;
    },
    logger: createLogger({ name: 'key-ring-test', level: 'silent' }),
    cacheMs: CACHE_MS,
    readWaitMs: READ_WAIT_MS,
    now: () => time,
  });
  return {
    ring,
    database,
    advance(ms: number) {
      time += ms;
    },
  };
}

describe('createKeyRing', () => {
  it('lists the pinned keys first, then the recorded ones, each kid once', async () => {
    const { ring } = ringOver([jwk('recorded'), jwk('active')], [jwk('active'), jwk('generated')]);
    expect(kids(await ring.jwks())).toEqual(['active', 'generated', 'recorded']);
  });

  it('times its cache from when the initial read began, not from when a slow one ended', async () => {
    const { ring, database, advance } = ringOver([jwk('k1')], [jwk('active')], { initialReadMs: CACHE_MS * 0.75 });
    database.recorded = [jwk('k2'), jwk('k1')];
    advance(CACHE_MS * 0.25);
    // Before: no read until the cache time after the initial read ended, and k2 missing meanwhile.
    expect(kids(await ring.jwks())).toEqual(['active', 'k2', 'k1']);
    expect(database.reads).toBe(1);
  });

  it('answers a burst within the cache time without a read, and the first after it with one read for all', async () => {
    const { ring, database, advance } = ringOver([jwk('k1')]);
    database.recorded = [jwk('k2'), jwk('k1')];
    await Promise.all(Array.from({ length: 50 }, () => ring.jwks()));
    expect(database.reads).toBe(0);
    expect(kids(await ring.jwks())).toEqual(['active', 'k1']);

    advance(CACHE_MS);
    const answers = await Promise.all(Array.from({ length: 50 }, () => ring.jwks()));
    expect(database.reads).toBe(1);
    for (const answer of answers) expect(kids(answer)).toEqual(['active', 'k2', 'k1']);
  });

  it('stops listing a recorded key once the database no longer lists it', async () => {
    const { ring, database, advance } = ringOver([jwk('old')]);
    database.recorded = [];
    advance(CACHE_MS);
    expect(kids(await ring.jwks())).toEqual(['active']);
  });

  it('keeps the keys last read while the database fails, asking again only once per cache time', async () => {
    const { ring, database, advance } = ringOver([jwk('k1')]);
    database.failing = true;
    advance(CACHE_MS);
    expect(kids(await ring.jwks())).toEqual(['active', 'k1']);
    expect(kids(await ring.jwks())).toEqual(['active', 'k1']);
    expect(database.reads).toBe(1);

    database.failing = false;
    database.recorded = [jwk('k2')];
    advance(CACHE_MS);
    expect(kids(await ring.jwks())).toEqual(['active', 'k2']);
    expect(database.reads).toBe(2);
  });

  it('answers with the keys last read when the read hangs, and with the new ones once it ends', async () => {
    const { ring, database, advance } = ringOver([jwk('k1')]);
    let release = () => {};
    database.hang = new Promise((resolve) => {
      release = resolve;
    });
    database.recorded = [jwk('k2')];
    advance(CACHE_MS);
    const started = performance.now();
    const [first, second] = await Promise.all([ring.jwks(), ring.jwks()]);
    expect(performance.now() - started).toBeLessThan(READ_WAIT_MS + 500);
    expect(kids(first)).toEqual(['active', 'k1']);
    expect(kids(second)).toEqual(['active', 'k1']);
    expect(database.reads).toBe(1);

    release();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(kids(await ring.jwks())).toEqual(['active', 'k2']);
    expect(database.reads).toBe(1);
  });
});
