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
import { type NatsConnection, NatsError, ErrorCode as NatsErrorCode, type Service } from 'nats';
import type { z } from 'zod';
import { decodeJson, encodeJson } from './json.js';

/** A failed request/reply call, with the bus error code of the answer (or `unavailable` when nobody answered). */
export class BusError extends Error {
  override name = 'BusError';
  constructor(
    readonly code: BusErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;

/** Sends a JSON request and decodes the answer with `replySchema`; error answers become `BusError`s. */
export async function requestJson<T>(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  replySchema: z.ZodType<T>,
  timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
): Promise<T> {
  let data: Uint8Array;
  try {
    data = (await nc.request(subject, encodeJson(body), { timeout: timeoutMs })).data;
  } catch (error) {
    const code = error instanceof NatsError ? error.code : undefined;
    const reason = code === NatsErrorCode.NoResponders ? 'no responders' : code === NatsErrorCode.Timeout ? 'timed out' : 'failed';
    throw new BusError(BusErrorCode.Unavailable, `request on ${subject} ${reason}`, { cause: error });
  }
  const value = decodeJson(data);
  const failure = busErrorSchema.safeParse(value);
  if (failure.success) throw new BusError(failure.data.error.code, failure.data.error.message);
  const reply = replySchema.safeParse(value);
  if (!reply.success) throw new BusError(BusErrorCode.Internal, `malformed reply on ${subject}`, { cause: reply.error });
  return reply.data;
}

/** Typed calls to the persistence service's endpoints. */
export function createPersistenceClient(nc: NatsConnection, subjects: Subjects, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS) {
  return {
    call<E extends keyof PersistenceApi>(endpoint: E, request: PersistenceRequest<E>): Promise<PersistenceReply<E>> {
      return requestJson(
        nc,
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
 * Adds a JSON endpoint to a NATS service: decodes each request with `requestSchema`, answers with
 * the handler's result, and turns a thrown `BusError` (or anything else, as `internal`) into an
 * error answer, so a bad request never goes unanswered.
 */
export function addJsonEndpoint<Req, Rep>(
  service: Service,
  options: {
    name: string;
    subject: string;
    requestSchema: z.ZodType<Req>;
    handler: (request: Req) => Promise<Rep>;
    logger: Logger;
    queue?: string;
  },
): void {
  const { name, subject, requestSchema, handler, logger } = options;
  service.addEndpoint(name, {
    subject,
    ...(options.queue === undefined ? {} : { queue: options.queue }),
    handler: (error, msg) => {
      if (error) {
        logger.error({ err: error, endpoint: name }, 'endpoint subscription failed');
        return;
      }
      const parsed = requestSchema.safeParse(decodeJson(msg.data));
      if (!parsed.success) {
        msg.respond(
          encodeJson({
            error: { code: BusErrorCode.Invalid, message: `invalid ${name} request: ${parsed.error.issues[0]?.message ?? ''}` },
          }),
        );
        return;
      }
      handler(parsed.data).then(
        (reply) => msg.respond(encodeJson(reply)),
        (failure: unknown) => {
          if (failure instanceof BusError) {
            msg.respond(encodeJson({ error: { code: failure.code, message: failure.message } }));
            return;
          }
          logger.error({ err: failure, endpoint: name }, 'endpoint failed');
          msg.respond(encodeJson({ error: { code: BusErrorCode.Internal, message: 'internal error' } }));
        },
      );
    },
  });
}
