import type { Logger } from '@switchboard/logging';
import type { JWK } from 'jose';
import type { Kysely } from 'kysely';
import { recordSigningKeyUse } from '../db/public-signing-key.repository.js';
import type { AuthDatabase } from '../db/schema.js';
import type { SigningKey } from './signing-keys.js';

/** How often a replica records that its key still signs; a key stays published at least this long past its last record. */
export const KEY_USE_RECORD_INTERVAL_MS = 60 * 60_000;
/** After a failed record, the next try comes sooner than the interval. */
const KEY_USE_RETRY_MS = 60_000;
/**
 * Added to every publication horizon: the clocks of auth replicas (which set `exp`), PostgreSQL
 * (which keeps the horizon) and gateways (5 s of tolerance) may differ, and a timer may run late.
 */
export const PUBLISH_MARGIN_MS = 5 * 60_000;

/**
 * How long a key must stay published after a record: its tokens live `ttlSeconds`, and it may sign
 * until the next record, an interval later. Each replica extends the horizon with its own
 * ACCESS_TOKEN_TTL, and the longest wins, so a key that signed 30-day tokens stays 30 days. A
 * fixed 30 days would also keep a replaced key, leaked perhaps, verifying for a month where its
 * tokens lived an hour.
 */
export function publishForMs(ttlSeconds: number): number {
  return ttlSeconds * 1000 + KEY_USE_RECORD_INTERVAL_MS + PUBLISH_MARGIN_MS;
}

export interface KeyUseRecorderOptions {
  db: Kysely<AuthDatabase>;
  key: SigningKey;
  publicJwk: JWK;
  ttlSeconds: number;
  logger: Logger;
}

/** Records the key's use once; answers how long ago (database clock) it was first recorded. */
export async function recordKeyUse({ db, key, publicJwk, ttlSeconds }: KeyUseRecorderOptions): Promise<number> {
  const { recordedForMs } = await recordSigningKeyUse(db, {
    kid: key.kid,
    alg: key.alg,
    publicJwk,
    publishForMs: publishForMs(ttlSeconds),
  });
  return recordedForMs;
}

/**
 * Records the key's use every interval while it signs, so its horizon stays ahead of the tokens it
 * signs. A failure is retried within a minute; signing needs the database too (users are read
 * there), so tokens are rarely signed while records fail.
 */
export function keepRecordingKeyUse(options: KeyUseRecorderOptions): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => void recordNow(), ms);
    timer.unref();
  };
  const recordNow = async () => {
    try {
      await recordKeyUse(options);
      schedule(KEY_USE_RECORD_INTERVAL_MS);
    } catch (error) {
      options.logger.warn({ err: error, kid: options.key.kid }, 'could not record the signing key as in use; retrying');
      schedule(KEY_USE_RETRY_MS);
    }
  };
  schedule(KEY_USE_RECORD_INTERVAL_MS);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
