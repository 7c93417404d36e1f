import { BusError, DEFAULT_REQUEST_TIMEOUT_MS, jsonEndpoint, type ServiceSpec } from '@switchboard/bus';
import { isPassingFailure } from '@switchboard/db';
import type { Logger } from '@switchboard/logging';
import {
  BusErrorCode,
  PERSISTENCE_ENDPOINTS,
  type PersistenceApi,
  type PersistenceReply,
  type PersistenceRequest,
  persistenceApi,
  type Subjects,
} from '@switchboard/protocol';
import { type ConcurrencyLimit, ConcurrencyLimitError, createConcurrencyLimit } from '@switchboard/runtime';
import type { Kysely } from 'kysely';
import type { z } from 'zod';
import {
  countWithinBudget,
  findHistoryPage,
  findMessageByClientMsgId,
  findMessagesAfter,
  isDeadLettered,
  pageBytesBudget,
} from '../db/message.repository.js';
import type { PersistenceDatabase } from '../db/schema.js';
import {
  findLastSeqs,
  findSession,
  insertSession,
  listSessions,
  type SessionCreateLimit,
  sessionCreateRetryAfterMs,
} from '../db/session.repository.js';

export const SERVICE_VERSION = '0.1.0';

type Handlers = { [E in keyof PersistenceApi]: (request: PersistenceRequest<E>) => Promise<PersistenceReply<E>> };

function createHandlers(db: Kysely<PersistenceDatabase>, sessionCreateLimit: SessionCreateLimit, maxPayload: () => number): Handlers {
  /** What the messages (or sessions) of one reply may take: under NATS's max_payload, read as it is now. */
  const pageBudget = () => pageBytesBudget(maxPayload());
  const sessionOrThrow = async (id: number) => {
    const session = await findSession(db, id);
    if (!session) throw new BusError(BusErrorCode.NotFound, `session ${id} does not exist`);
    return session;
  };
  return {
    'sessions.create': async (request) => {
      const session = await insertSession(db, { customerId: request.customer_id, subject: request.subject }, sessionCreateLimit);
      if (!session) {
        const minutes = Math.ceil(sessionCreateLimit.windowMs / 60_000);
        // Only a hint: should reading it fail, the refusal goes without it.
        const retryAfterMs = await sessionCreateRetryAfterMs(db, request.customer_id, sessionCreateLimit).catch(() => undefined);
        throw new BusError(
          BusErrorCode.RateLimited,
          `at most ${sessionCreateLimit.max} new sessions per ${minutes} minutes; try again later`,
          {
            retryAfterMs,
          },
        );
      }
      return { session };
    },
    'sessions.get': async (request) => ({ session: await sessionOrThrow(request.session_id) }),
    'sessions.list': async (request) => {
      const { sessions, hasMore } = await listSessions(db, {
        status: request.status,
        customerId: request.customer_id,
        beforeId: request.before_id,
        limit: request.limit,
      });
      // Subjects of 200 characters, escaped, make a list of 200 up to about 250 KB: fewer under a smaller max_payload.
      const fitting = countWithinBudget(sessions, pageBudget());
      return { sessions: sessions.slice(0, fitting), has_more: hasMore || fitting < sessions.length };
    },
    'sessions.heads': async (request) => ({ heads: await findLastSeqs(db, request.session_ids) }),
    'messages.history': async (request) => {
      await sessionOrThrow(request.session_id);
      const page = await findHistoryPage(db, {
        sessionId: request.session_id,
        beforeSeq: request.before_seq,
        limit: request.limit,
        budgetBytes: pageBudget(),
      });
      return { messages: page.messages, has_more: page.hasMore };
    },
    'messages.after': async (request) => ({
      messages: await findMessagesAfter(db, {
        sessionId: request.session_id,
        afterSeq: request.after_seq,
        limit: request.limit,
        budgetBytes: pageBudget(),
      }),
    }),
    'messages.lookup': async (request) => {
      const message = await findMessageByClientMsgId(db, request.session_id, request.client_msg_id);
      if (message || request.stream_seq === undefined) return { message: message ?? null };
      return { message: null, dead_lettered: await isDeadLettered(db, request.session_id, request.client_msg_id, request.stream_seq) };
    },
  };
}

/**
 * The database being unreachable or unable to take writes (read-only after a failover, disk full),
 * or no connection to be had (a login refused after a password rotation), is `unavailable` to the
 * caller, who may retry; anything else stays `internal`, which is not retried.
 */
function withUnavailable<Req, Rep>(handler: (request: Req) => Promise<Rep>) {
  return async (request: Req) => {
    try {
      return await handler(request);
    } catch (error) {
      if (isPassingFailure(error)) throw new BusError(BusErrorCode.Unavailable, 'database unavailable', { cause: error });
      throw error;
    }
  };
}

/**
 * How long a request may wait for a turn: half of what a gateway waits for its answer
 * (`DEFAULT_REQUEST_TIMEOUT_MS`). One that waited longer is answered `unavailable` without running
 * its queries, while its caller still listens, and can retry or tell its client. Waiting the whole
 * of the caller's time, as before, every request a lasting overload let through had used that time
 * up in line: it ran its queries for nobody, and its caller heard nothing at all.
 */
export const API_MAX_WAIT_MS = DEFAULT_REQUEST_TIMEOUT_MS / 2;

/** Runs each request's handler under `limit`; one refused there is answered `unavailable`. */
function withinLimit<Req, Rep>(limit: ConcurrencyLimit, handler: (request: Req) => Promise<Rep>) {
  return async (request: Req) => {
    try {
      return await limit.run(() => handler(request));
    } catch (error) {
      if (error instanceof ConcurrencyLimitError)
        throw new BusError(BusErrorCode.Unavailable, 'persistence is busy; try again', { cause: error });
      throw error;
    }
  };
}

/**
 * Persistence in the NATS services framework (`$SRV.PING/INFO/STATS` list it) with one endpoint
 * per request of `persistenceApi`. Replicas share each endpoint.
 */
export function persistenceServiceSpec({
  db,
  subjects,
  logger,
  stats,
  sessionCreateLimit,
  concurrency,
  maxPayload,
}: {
  db: Kysely<PersistenceDatabase>;
  subjects: Subjects;
  logger: Logger;
  stats: () => Promise<Record<string, number>>;
  sessionCreateLimit: SessionCreateLimit;
  /**
   * Requests handled at once, across all endpoints; the others wait in line. Each handler runs
   * its queries one after another, so this is also the most connections the API holds at once.
   */
  concurrency: number;
  /** The most bytes NATS takes in one message (`Bus.maxPayload`): pages of messages are cut to fit. */
  maxPayload: () => number;
}): ServiceSpec {
  const handlers = createHandlers(db, sessionCreateLimit, maxPayload);
  const limit = createConcurrencyLimit({ concurrency, maxWaitMs: API_MAX_WAIT_MS });
  const log = logger.child({ module: 'api' });
  return {
    name: subjects.persistenceServiceName,
    version: SERVICE_VERSION,
    description: 'Switchboard persistence: sessions and message history',
    stats,
    endpoints: PERSISTENCE_ENDPOINTS.map((endpoint) =>
      jsonEndpoint({
        name: endpoint.replace('.', '-'),
        subject: subjects.persistence(endpoint),
        requestSchema: persistenceApi[endpoint].request as z.ZodType<PersistenceRequest<typeof endpoint>>,
        handler: withinLimit(
          limit,
          withUnavailable(handlers[endpoint] as (request: PersistenceRequest<typeof endpoint>) => Promise<unknown>),
        ),
        logger: log,
      }),
    ),
  };
}
