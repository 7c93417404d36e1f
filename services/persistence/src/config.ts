import { ConfigError, commonEnv, commonSettings, databaseEnv, env, loadConfig } from '@switchboard/config';
import { z } from 'zod';

export const DEFAULT_OPS_PORT = 9402;

const persistenceEnv = {
  ...commonEnv,
  ...databaseEnv,
  OPS_PORT: env.port(DEFAULT_OPS_PORT),
  /** Most messages stored in one transaction. */
  BATCH_MAX: env.integer({ default: 500, min: 1, max: 10_000 }),
  /**
   * Most bytes of inbound messages in one transaction (a message over it is stored alone). 16 MiB
   * holds BATCH_MAX messages of the gateway's default limits; with far larger messages allowed, a
   * batch of 500 was one statement of hundreds of megabytes.
   */
  BATCH_MAX_BYTES: env.integer({ default: 16 * 1024 * 1024, min: 1024, max: 1024 * 1024 * 1024 }),
  /** How long JetStream waits for an ack before redelivering to another replica. */
  INBOUND_ACK_WAIT: env.duration({ default: '10s', min: '1s', max: '1h' }),
  /** Deliveries of one inbound message before JetStream gives up on it. */
  INBOUND_MAX_DELIVER: env.integer({ default: 20, min: 2, max: 10_000 }),
  /** JetStream de-duplication window on Nats-Msg-Id (session and client_msg_id). */
  INBOUND_DUPLICATE_WINDOW: env.duration({ default: '2m', min: '1s', max: '1d' }),
  /** How long an unconsumed inbound message is kept (a persistence outage longer than this loses messages). */
  INBOUND_MAX_AGE: env.duration({ default: '7d', min: '1m', max: '365d' }),
  /** Replicas of the inbound stream: 3 in a NATS cluster. */
  INBOUND_REPLICAS: env.integer({ default: 1, min: 1, max: 5 }),
  /** Sessions one customer may create within SESSION_CREATE_WINDOW; more get `rate_limited`. */
  SESSION_CREATE_LIMIT: env.integer({ default: 30, min: 1, max: 1_000_000 }),
  SESSION_CREATE_WINDOW: env.duration({ default: '1h', min: '1s', max: '30d' }),
  /**
   * TEST ONLY, default off: makes the process fail at a chosen point so the fault tests can hit
   * a window that is otherwise a matter of luck. `exit-after-commit:<n>` kills the process
   * (SIGKILL) right after the n-th batch commits, before its confirmed events and its acks.
   * Never set it in a deployment.
   */
  FAULT_INJECT: z.preprocess(
    (value) => (value === '' ? undefined : value),
    z
      .string()
      .regex(/^exit-after-commit:[1-9]\d*$/, 'expected exit-after-commit:<n> (test only)')
      .optional(),
  ),
};

/** A test-only fault (see FAULT_INJECT). */
export interface FaultInjection {
  /** Kill the process right after this many batches have committed. */
  exitAfterCommit?: number;
}

function parseFaultInjection(raw: string | undefined): FaultInjection {
  const match = raw === undefined ? null : /^exit-after-commit:(\d+)$/.exec(raw);
  return match ? { exitAfterCommit: Number(match[1]) } : {};
}

/**
 * The fewest connections persistence's pool may have: one for storing messages, the rest for
 * requests. With one, the API and the inbound consumer would share it, and a flood of requests
 * would hold every batch behind it, as before the API had connections of its own (app.ts).
 */
export const MIN_DATABASE_POOL_SIZE = 2;

export function loadPersistenceConfig(source: NodeJS.ProcessEnv = process.env) {
  const raw = loadConfig(persistenceEnv, source);
  // JetStream refuses a stream whose de-duplication window is longer than its max age.
  if (raw.INBOUND_DUPLICATE_WINDOW > raw.INBOUND_MAX_AGE)
    throw new ConfigError(['INBOUND_DUPLICATE_WINDOW: expected at most INBOUND_MAX_AGE']);
  if (raw.DATABASE_POOL_SIZE < MIN_DATABASE_POOL_SIZE)
    throw new ConfigError([
      `DATABASE_POOL_SIZE: expected at least ${MIN_DATABASE_POOL_SIZE} for persistence (one for storing messages, the rest for requests)`,
    ]);
  return Object.freeze({
    ...commonSettings(raw),
    opsPort: raw.OPS_PORT,
    databaseUrl: raw.DATABASE_URL,
    databasePoolSize: raw.DATABASE_POOL_SIZE,
    batchMax: raw.BATCH_MAX,
    batchMaxBytes: raw.BATCH_MAX_BYTES,
    sessionCreateLimit: { max: raw.SESSION_CREATE_LIMIT, windowMs: raw.SESSION_CREATE_WINDOW },
    inbound: {
      ackWaitMs: raw.INBOUND_ACK_WAIT,
      maxDeliver: raw.INBOUND_MAX_DELIVER,
      duplicateWindowMs: raw.INBOUND_DUPLICATE_WINDOW,
      maxAgeMs: raw.INBOUND_MAX_AGE,
      replicas: raw.INBOUND_REPLICAS,
    },
    faultInjection: parseFaultInjection(raw.FAULT_INJECT),
  });
}

export type PersistenceConfig = ReturnType<typeof loadPersistenceConfig>;
