import { z } from 'zod';
import { clientMsgIdSchema, idSchema, isStorableText, messageSchema, SESSION_STATUSES, seqSchema, sessionSchema } from './model.js';
import { ROLES } from './roles.js';

/**
 * Payloads between services on NATS. Each is decoded once where it is received, with these
 * schemas; a payload that does not match is refused there.
 */

/**
 * Text PostgreSQL would store otherwise than sent (or not at all) is refused where it is received,
 * as at the gateway: one with a lone surrogate was stored (as U+FFFD), then not found by its key;
 * a NUL failed the statement, which a caller was told was an internal error.
 */
const storableClientMsgIdSchema = clientMsgIdSchema.refine(isStorableText, 'client_msg_id must not contain NUL or lone surrogates');

/** Published by a gateway on `inbound(session_id)` with `Nats-Msg-Id: inboundMessageId(…)`. */
export const inboundMessageSchema = z.object({
  session_id: idSchema,
  client_msg_id: storableClientMsgIdSchema,
  sender_id: idSchema,
  sender_role: z.enum(ROLES),
  content: z.string().refine(isStorableText, 'content must not contain NUL or lone surrogates'),
  /** When the gateway received it (ISO-8601), for latency metrics. */
  received_at: z.string(),
});
export type InboundMessage = z.infer<typeof inboundMessageSchema>;

/** Printable ASCII but `%`: what a client id may hold to go into a NATS header as it is. */
const HEADER_SAFE = /^[!-$&-~]*$/;

/**
 * JetStream's dedupe key (`Nats-Msg-Id`) of a client's message: `<session_id>:<client_msg_id>`.
 * A NATS header value cannot hold CR or LF (nats.js throws) and loses white space at its ends
 * (`x` and `x ` would be one message), so an id with anything but printable ASCII, or with `%`,
 * goes in with each other UTF-16 unit as `%` and four hex digits. Ids that need no escape, the
 * usual kind, contain no `%`, so no two ids get the same key.
 */
export function inboundMessageId(sessionId: number, clientMsgId: string): string {
  const key = HEADER_SAFE.test(clientMsgId)
    ? clientMsgId
    : clientMsgId.replace(/[^!-$&-~]/g, (unit) => `%${unit.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return `${sessionId}:${key}`;
}

/** Published by persistence on `confirmed(session_id)` after the message is committed, again on redelivery. */
export const confirmedEventSchema = z.object({ message: messageSchema });
export type ConfirmedEvent = z.infer<typeof confirmedEventSchema>;

/** Published by persistence on `deadLetters` for a message it gave up on; the sender's gateway answers the client. */
export const deadLetterSchema = z.object({
  session_id: z.number(),
  client_msg_id: z.string(),
  reason: z.string(),
});
export type DeadLetter = z.infer<typeof deadLetterSchema>;

/**
 * Published by auth on `authRevocations` when an account is disabled or its role or password
 * changes: the user's tokens issued at a lower `token_version` than this (a token's `tv` claim)
 * are no longer accepted. Gateways close the sockets that authenticated with one, and refuse
 * them from then on.
 */
export const tokenRevocationSchema = z.object({
  user_id: idSchema,
  token_version: z.number().int().nonnegative(),
});
export type TokenRevocation = z.infer<typeof tokenRevocationSchema>;

const sessionWithSeqSchema = sessionSchema.extend({ last_seq: seqSchema });
export type SessionWithSeq = z.infer<typeof sessionWithSeqSchema>;

/**
 * What a NATS message takes beyond the JSON it is measured by, at most: the headers of an inbound
 * publish (1,324 bytes with a `client_msg_id` of 128 characters outside the BMP, each escaped as
 * two `%XXXX`, and the largest session id), the id, seq and wrapper its confirmed event adds
 * (under 100), or a reply's wrapper and headers. Whatever must fit in the server's `max_payload`
 * is kept this far under it.
 */
export const MAX_PAYLOAD_HEADROOM_BYTES = 1_536;

/** Sessions asked about in one `sessions.heads` request (its reply stays well under NATS's 1 MiB). */
export const SESSION_HEADS_MAX = 5_000;
/** The most bytes one entry of a `sessions.heads` reply takes: `{"id":…,"last_seq":…},` with 16 digits each. */
const SESSION_HEAD_MAX_BYTES = 52;

/** Sessions asked about in one `sessions.heads` request, so that its reply fits in a NATS message of `maxPayload` bytes. */
export function sessionHeadsPerRequest(maxPayload: number): number {
  return Math.max(1, Math.min(SESSION_HEADS_MAX, Math.floor((maxPayload - MAX_PAYLOAD_HEADROOM_BYTES) / SESSION_HEAD_MAX_BYTES)));
}

/** Request and reply bodies of each persistence endpoint. */
export const persistenceApi = {
  'sessions.create': {
    request: z.object({
      customer_id: idSchema,
      subject: z.string().max(200).refine(isStorableText, 'subject must not contain NUL or lone surrogates').nullable(),
    }),
    reply: z.object({ session: sessionSchema }),
  },
  'sessions.get': {
    request: z.object({ session_id: idSchema }),
    reply: z.object({ session: sessionWithSeqSchema }),
  },
  'sessions.list': {
    request: z.object({
      status: z.enum(SESSION_STATUSES).optional(),
      customer_id: idSchema.optional(),
      /** Sessions listed after this one, newest first: the next page. */
      before_id: idSchema.optional(),
      limit: z.number().int().min(1).max(200),
    }),
    // `has_more` is missing from a persistence older than paging (during a rolling upgrade).
    reply: z.object({ sessions: z.array(sessionWithSeqSchema), has_more: z.boolean().optional() }),
  },
  'messages.history': {
    request: z.object({ session_id: idSchema, before_seq: idSchema.optional(), limit: z.number().int().min(1).max(200) }),
    reply: z.object({ messages: z.array(messageSchema), has_more: z.boolean() }),
  },
  'messages.after': {
    request: z.object({ session_id: idSchema, after_seq: seqSchema, limit: z.number().int().min(1).max(1000) }),
    reply: z.object({ messages: z.array(messageSchema) }),
  },
  'sessions.heads': {
    request: z.object({ session_ids: z.array(idSchema).min(1).max(SESSION_HEADS_MAX) }),
    reply: z.object({ heads: z.array(z.object({ id: idSchema, last_seq: seqSchema })) }),
  },
  'messages.lookup': {
    // `stream_seq`: the inbound stream's sequence of the publish asked about (its PubAck's). With
    // it, `dead_lettered` says whether that very message was set aside for good, not another
    // sent with the same id long before (a persistence of before answers neither).
    request: z.object({ session_id: idSchema, client_msg_id: storableClientMsgIdSchema, stream_seq: seqSchema.optional() }),
    reply: z.object({ message: messageSchema.nullable(), dead_lettered: z.boolean().optional() }),
  },
} as const;

export type PersistenceApi = typeof persistenceApi;
export type PersistenceRequest<E extends keyof PersistenceApi> = z.infer<PersistenceApi[E]['request']>;
export type PersistenceReply<E extends keyof PersistenceApi> = z.infer<PersistenceApi[E]['reply']>;

/** Error codes in request/reply answers: `{ error: { code, message, retry_after_ms? } }`. */
export const BusErrorCode = {
  NotFound: 'not_found',
  Invalid: 'invalid',
  Unavailable: 'unavailable',
  /** A per-user limit was reached (new sessions per customer): retry later. */
  RateLimited: 'rate_limited',
  Internal: 'internal',
} as const;
export type BusErrorCode = (typeof BusErrorCode)[keyof typeof BusErrorCode];

export const busErrorSchema = z.object({
  error: z.object({
    code: z.enum(Object.values(BusErrorCode) as [BusErrorCode, ...BusErrorCode[]]),
    message: z.string(),
    /** With `rate_limited`: how long until the same request can succeed. */
    retry_after_ms: z.number().int().nonnegative().optional(),
  }),
});
