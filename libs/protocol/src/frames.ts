import { z } from 'zod';
import { ErrorCode } from './errors.js';
import { clientMsgIdSchema, idSchema, type Message, type Session, seqSchema } from './model.js';
import type { Role } from './roles.js';

/** Version sent in `connected`; bumped only for changes old clients cannot ignore. */
export const PROTOCOL_VERSION = 1;
export const HISTORY_DEFAULT_LIMIT = 50;
export const HISTORY_MAX_LIMIT = 200;

/**
 * A string of up to 128 characters (Unicode code points, as zod counts them), or a number JSON carries exactly: one beyond
 * ±Number.MAX_SAFE_INTEGER (a uint64 counter, say) is rounded when parsed, and its reply would
 * echo another number, matching no request.
 */
const reqIdSchema = z.union([
  z.string().max(128),
  z
    .number()
    .finite()
    .refine((value) => Math.abs(value) <= Number.MAX_SAFE_INTEGER),
]);
export type ReqId = z.infer<typeof reqIdSchema>;

/** A reply's `req_id` field: the request's, or none when the request carried none. */
export const withReqId = (reqId: ReqId | undefined): { req_id?: ReqId } => (reqId === undefined ? {} : { req_id: reqId });

/** The longest token an `auth` frame takes. */
export const MAX_TOKEN_CHARS = 16_384;
/**
 * The longest `auth` frame a gateway must take, in bytes: the longest token (ASCII, as a JWT is)
 * with the longest `req_id`, each of its 128 characters outside the BMP and written as a pair of
 * `\uXXXX` escapes (12 bytes each, 1,536 in all), and the JSON around them.
 */
export const MAX_AUTH_FRAME_BYTES = MAX_TOKEN_CHARS + 2_048;

const frame = <const T extends string, S extends z.ZodRawShape>(type: T, shape: S) =>
  z.object({ type: z.literal(type), req_id: reqIdSchema.optional(), ...shape });

/**
 * Every frame a client may send (contract §3). Unknown extra fields are ignored, so clients can
 * be newer than the gateway. `content` length is checked by the gateway against MAX_CONTENT_CHARS.
 */
export const clientFrameSchemas = {
  auth: frame('auth', { token: z.string().min(1).max(MAX_TOKEN_CHARS) }),
  create_session: frame('create_session', { subject: z.string().trim().max(200).optional() }),
  join_session: frame('join_session', { session_id: idSchema, last_seq: seqSchema.optional() }),
  leave_session: frame('leave_session', { session_id: idSchema }),
  send_message: frame('send_message', {
    session_id: idSchema,
    content: z.string().refine((value) => value.trim().length > 0, 'content must not be empty'),
    client_msg_id: clientMsgIdSchema.optional(),
  }),
  history: frame('history', {
    session_id: idSchema,
    before_seq: idSchema.optional(),
    limit: z.number().int().min(1).max(HISTORY_MAX_LIMIT).optional(),
  }),
  list_sessions: frame('list_sessions', {
    status: z.enum(['open', 'closed']).optional(),
    /** The next page: the sessions listed after this one (the last of the page before). */
    before_id: idSchema.optional(),
    limit: z.number().int().min(1).max(HISTORY_MAX_LIMIT).optional(),
  }),
  ping: frame('ping', {}),
} as const;

export type ClientFrameType = keyof typeof clientFrameSchemas;
export type ClientFrame = { [K in ClientFrameType]: z.infer<(typeof clientFrameSchemas)[K]> }[ClientFrameType];
export type ClientFrameOf<K extends ClientFrameType> = z.infer<(typeof clientFrameSchemas)[K]>;

export class FrameError extends Error {
  override name = 'FrameError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly reqId?: ReqId,
  ) {
    super(message);
  }
}

const isClientFrameType = (type: string): type is ClientFrameType => Object.hasOwn(clientFrameSchemas, type);

/** Turns zod issues into one readable sentence naming each field. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const field = issue.path.join('.');
      if (issue.code === 'unrecognized_keys') return `unknown field(s): ${issue.keys.join(', ')}`;
      if (issue.code === 'invalid_type' && /received undefined$/.test(issue.message)) return `${field} is required`;
      return field ? `${field}: ${issue.message}` : issue.message;
    })
    .join('; ');
}

/** A frame's `req_id`, when it has a valid one: echoed on its reply, even a refusal. */
function readReqId(raw: Record<string, unknown>): ReqId | undefined {
  return raw.req_id !== undefined && reqIdSchema.safeParse(raw.req_id).success ? (raw.req_id as ReqId) : undefined;
}

/** A frame's text as a JSON object, or a `FrameError` saying what it is instead. */
function parseFrameObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new FrameError(ErrorCode.InvalidMessage, 'frame is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FrameError(ErrorCode.InvalidMessage, 'frame must be a JSON object');
  }
  const fields = value as Record<string, unknown>;
  // A field sent as null is taken as absent: serialisers of other languages (Go without
  // `omitempty`, Jackson, System.Text.Json) write an unset optional field that way. A required
  // one is still missing.
  for (const key in fields) if (fields[key] === null) delete fields[key];
  return fields;
}

/**
 * The one boundary for client frames: parses text into a typed frame or throws a `FrameError`
 * carrying the contract's error code and, when it could be read, the frame's `req_id`.
 */
export function decodeClientFrame(text: string): ClientFrame {
  const raw = parseFrameObject(text);
  const reqId = readReqId(raw);
  // Before the type: a frame of an unknown type with a bad `req_id` is refused for the `req_id`,
  // as any other is, rather than answered `unknown_type` without one.
  if (raw.req_id !== undefined && reqId === undefined)
    throw new FrameError(
      ErrorCode.InvalidMessage,
      'req_id must be a string of at most 128 characters or a number within ±9007199254740991',
    );
  if (typeof raw.type !== 'string') throw new FrameError(ErrorCode.InvalidMessage, 'frame must have a string "type"', reqId);
  if (!isClientFrameType(raw.type))
    throw new FrameError(ErrorCode.UnknownType, `unknown frame type "${Array.from(raw.type).slice(0, 64).join('')}"`, reqId);
  const result = clientFrameSchemas[raw.type].safeParse(raw);
  if (!result.success) throw new FrameError(ErrorCode.InvalidMessage, describeIssues(result.error), reqId);
  return result.data as ClientFrame;
}

/**
 * The `req_id` and `client_msg_id` of a frame refused before it is decoded (too large), when its
 * text is a JSON object that has them: so that the client can tell which request or message the
 * refusal answers, and stop waiting for it.
 */
export function readFrameIds(text: string): { reqId?: ReqId; clientMsgId?: string } {
  let fields: Record<string, unknown>;
  try {
    fields = parseFrameObject(text);
  } catch {
    return {};
  }
  const reqId = readReqId(fields);
  const clientMsgId = fields.client_msg_id;
  return {
    ...(reqId === undefined ? {} : { reqId }),
    ...(clientMsgIdSchema.safeParse(clientMsgId).success ? { clientMsgId: clientMsgId as string } : {}),
  };
}

/** Length in Unicode code points, the unit of MAX_CONTENT_CHARS. */
export function contentLength(content: string): number {
  let count = 0;
  for (let i = 0; i < content.length; i++) {
    const code = content.charCodeAt(i);
    // A high surrogate followed by a low one is one code point.
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < content.length) {
      const next = content.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    count++;
  }
  return count;
}

/** Frames the gateway sends (contract §3). */
export type ServerFrame =
  | { type: 'connected'; connection_id: string; heartbeat_interval_ms: number; protocol_version: number }
  | { type: 'auth_success'; req_id?: ReqId; user: { id: number; username: string; role: Role } }
  | { type: 'session_created'; req_id?: ReqId; session: Session }
  | { type: 'joined_session'; req_id?: ReqId; session_id: number; last_seq: number }
  | { type: 'left_session'; req_id?: ReqId; session_id: number }
  | { type: 'message_ack'; req_id?: ReqId; session_id: number; client_msg_id: string; message_id: number; seq: number }
  | { type: 'new_message'; message: Message }
  | { type: 'history'; req_id?: ReqId; session_id: number; messages: Message[]; has_more: boolean }
  | { type: 'sessions'; req_id?: ReqId; sessions: (Session & { last_seq: number })[]; has_more: boolean }
  | { type: 'pong'; req_id?: ReqId; server_time: string }
  | { type: 'error'; code: ErrorCode; message: string; req_id?: ReqId; client_msg_id?: string; retry_after_ms?: number };
