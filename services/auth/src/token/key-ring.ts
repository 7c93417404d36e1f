import type { Logger } from '@switchboard/logging';
import { settlesWithin } from '@switchboard/runtime';
import type { JWK } from 'jose';
import type { Kysely } from 'kysely';
import { listPublishedKeys } from '../db/public-signing-key.repository.js';
import type { AuthDatabase } from '../db/schema.js';
import { keepRecordingKeyUse, recordKeyUse } from './key-use.js';
import { loadSigningKeys, publicJwkOf, type SigningKey } from './signing-keys.js';

/** A burst of JWKS requests costs one query: the keys read are answered for this long. */
export const JWKS_CACHE_MS = 2_000;
/**
 * A JWKS answer waits this long at most for the re-read, then goes out with the keys last read:
 * gateways ask over NATS with a 2 s timeout, and a database outage must not take the JWKS down.
 */
export const JWKS_READ_WAIT_MS = 500;
/** Beyond JWKS_CACHE_MS: from the key's record (the database's `now()`) to its commit. */
const PUBLICATION_MARGIN_MS = 500;

export interface JwkSet {
  keys: JWK[];
}

export interface KeyRing {
  /** The key that signs new tokens. */
  readonly active: SigningKey;
  /**
   * Public keys of every key that may have signed a live token, active first: read again from the
   * database first when the last read is over JWKS_CACHE_MS old, else as last read.
   */
  jwks(): Promise<JwkSet>;
}

export interface KeyRingOptions {
  active: SigningKey;
  /** Always published, in this order: the active key's, then the stored (generated) keys'. */
  pinned: JWK[];
  /** The keys other replicas recorded (and this one), read as of now; `initial` was read at start. */
  readRecorded: () => Promise<JWK[]>;
  initial: JWK[];
  /**
   * When the read of `initial` began (by `now`; default: now). Timed from its end, a slow first
   * read was answered for up to JWKS_CACHE_MS after it ended, past what `waitForPublication`
   * allows for: a key another replica recorded while it ran, and signed with 2.5 s later, was
   * missing from this replica's answers, and a gateway that asked it refused the key's tokens.
   */
  initialReadStartedAt?: number;
  logger: Logger;
  cacheMs?: number;
  readWaitMs?: number;
  /** Monotonic milliseconds, injected by tests. */
  now?: () => number;
}

/** Pinned keys first; a recorded copy of one of them is dropped. */
function union(pinned: JWK[], recorded: JWK[]): JwkSet {
  const kids = new Set(pinned.map((key) => key.kid));
  return { keys: [...pinned, ...recorded.filter((key) => !kids.has(key.kid))] };
}

/**
 * The published keys, kept as last read. A re-read that fails keeps them, and is not tried again
 * before JWKS_CACHE_MS, so an outage costs one query per period, not one per request.
 */
export function createKeyRing(options: KeyRingOptions): KeyRing {
  const {
    active,
    pinned,
    readRecorded,
    logger,
    cacheMs = JWKS_CACHE_MS,
    readWaitMs = JWKS_READ_WAIT_MS,
    now = () => performance.now(),
  } = options;
  let current = union(pinned, options.initial);
  let readStartedAt = options.initialReadStartedAt ?? now();
  let reading: Promise<void> | undefined;
  let failing = false;

  const reread = async () => {
    // Stamped before the query: a read that began before another replica recorded its key is not
    // answered for longer than JWKS_CACHE_MS after that record (see waitForPublication).
    readStartedAt = now();
    try {
      current = union(pinned, await readRecorded());
      if (failing) logger.info('published keys read again');
      failing = false;
    } catch (error) {
      if (!failing) logger.warn({ err: error }, 'could not read the published keys; answering with the last ones read');
      failing = true;
    }
  };

  return {
    active,
    async jwks() {
      if (now() - readStartedAt >= cacheMs) {
        // `finally` runs after the assignment even when the read fails at once.
        reading ??= reread().finally(() => {
          reading = undefined;
        });
      }
      if (reading) await settlesWithin(reading, readWaitMs);
      return current;
    },
  };
}

/**
 * Waits until a key first recorded `recordedForMs` ago can be in every replica's answers: each
 * re-reads the database once its keys are JWKS_CACHE_MS old. Only a key new to the database waits,
 * so that a gateway that meets its first token and asks any replica finds it.
 */
async function waitForPublication(recordedForMs: number, logger: Logger): Promise<void> {
  const waitMs = Math.ceil(JWKS_CACHE_MS + PUBLICATION_MARGIN_MS - recordedForMs);
  if (waitMs <= 0) return;
  logger.info({ waitMs }, 'new signing key recorded; waiting for every replica to publish it before signing');
  await new Promise((resolve) => setTimeout(resolve, waitMs));
}

export interface OpenKeyRingOptions {
  configuredPem: string | undefined;
  /** This replica's ACCESS_TOKEN_TTL: how long its key must stay published after its last use. */
  ttlSeconds: number;
  logger: Logger;
}

/**
 * Loads the signing keys, records the active one's public key in the database (so every replica
 * publishes it, and goes on publishing it after this one switches keys, until its tokens expire),
 * and keeps recording it while it signs. Resolves only once other replicas can publish the key.
 */
export async function openKeyRing(
  db: Kysely<AuthDatabase>,
  { configuredPem, ttlSeconds, logger }: OpenKeyRingOptions,
): Promise<KeyRing & { stop(): void }> {
  const { active, stored } = await loadSigningKeys(db, configuredPem);
  const activeJwk = await publicJwkOf(active);
  const pinned = [activeJwk, ...(await Promise.all(stored.filter((key) => key.kid !== active.kid).map(publicJwkOf)))];
  const use = { db, key: active, publicJwk: activeJwk, ttlSeconds, logger };
  await waitForPublication(await recordKeyUse(use), logger);
  const readRecorded = () => listPublishedKeys(db);
  const initialReadStartedAt = performance.now();
  const initial = await readRecorded();
  const ring = createKeyRing({ active, pinned, readRecorded, initial, initialReadStartedAt, logger });
  const recorder = keepRecordingKeyUse(use);
  return { ...ring, stop: () => recorder.stop() };
}
