import type { Logger } from '@switchboard/logging';
import {
  BusErrorCode,
  busErrorSchema,
  type PersistenceApi,
  type PersistenceReply,
  type PersistenceRequest,
  persistenceApi,
  type Subjects,
} from '@switchboard/protocol';
import type { z } from 'zod';
import { type Bus, BusError, type EndpointSpec, ErrorAnswer } from './bus.js';
import { decodeJson, encodeJson } from './json.js';

export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;

/** Sends a JSON request and decodes the answer with `replySchema`; error answers become `BusError`s. */
export async function requestJson<T>(
  bus: Bus,
  subject: string,
  body: unknown,
  replySchema: z.ZodType<T>,
  timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
): Promise<T> {
  const value = decodeJson(await bus.request(subject, encodeJson(body), timeoutMs));
  const failure = busErrorSchema.safeParse(value);
  if (failure.success) {
    const { code, message, retry_after_ms: retryAfterMs } = failure.data.error;
    throw new BusError(code, message, { retryAfterMs });
  }
  const reply = replySchema.safeParse(value);
  if (!reply.success) throw new BusError(BusErrorCode.Internal, `malformed reply on ${subject}`, { cause: reply.error });
  return reply.data;
}

/** Typed calls to the persistence service's endpoints. */
export function createPersistenceClient(bus: Bus, subjects: Subjects, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS) {
  return {
    call<E extends keyof PersistenceApi>(endpoint: E, request: PersistenceRequest<E>): Promise<PersistenceReply<E>> {
      return requestJson(
        bus,
        subjects.persistence(endpoint),
        request,
        persistenceApi[endpoint].reply as unknown as z.ZodType<PersistenceReply<E>>,
        timeoutMs,
      );
    },
  };
}
export type PersistenceClient = ReturnType<typeof createPersistenceClient>;

/**
 * A JSON endpoint: decodes each request with `requestSchema`, answers with the handler's result,
 * and turns a thrown `BusError` (or anything else, as `internal`) into an error answer, so a bad
 * request never goes unanswered.
 */
export function jsonEndpoint<Req, Rep>(options: {
  name: string;
  subject: string;
  requestSchema: z.ZodType<Req>;
  handler: (request: Req) => Promise<Rep>;
  logger: Logger;
}): EndpointSpec {
  const { name, subject, requestSchema, handler, logger } = options;
  const answerError = (code: BusErrorCode, message: string, retryAfterMs?: number) =>
    new ErrorAnswer(
      encodeJson({
        error:
          retryAfterMs === undefined || !Number.isFinite(retryAfterMs)
            ? { code, message }
            : { code, message, retry_after_ms: Math.max(0, Math.ceil(retryAfterMs)) },
      }),
    );
  return {
    name,
    subject,
    async handler(data) {
      const parsed = requestSchema.safeParse(decodeJson(data));
      if (!parsed.success) return answerError(BusErrorCode.Invalid, `invalid ${name} request: ${parsed.error.issues[0]?.message ?? ''}`);
      try {
        return encodeJson(await handler(parsed.data));
      } catch (failure) {
        if (failure instanceof BusError) return answerError(failure.code, failure.message, failure.retryAfterMs);
        logger.error({ err: failure, endpoint: name }, 'endpoint failed');
        return answerError(BusErrorCode.Internal, 'internal error');
      }
    },
  };
}
