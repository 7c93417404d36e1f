import { z } from 'zod';
import { ROLES } from './roles.js';

const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Whether PostgreSQL stores the text as sent: it cannot hold NUL in `text` at all, and it stores
 * a lone surrogate as U+FFFD, so the stored text (and an id matched by it) would differ from
 * what was sent.
 */
export const isStorableText = (value: string) => !value.includes('\u0000') && !LONE_SURROGATE.test(value);
export const hasLoneSurrogate = (value: string) => LONE_SURROGATE.test(value);

/** Ids are positive integers in JSON (contract §2). */
export const idSchema = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
export const seqSchema = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
export const clientMsgIdSchema = z.string().min(1).max(128);

/** A stored message, as clients and services see it (contract §3). */
export const messageSchema = z.object({
  id: idSchema,
  session_id: idSchema,
  seq: idSchema,
  sender_id: idSchema,
  sender_role: z.enum(ROLES),
  content: z.string(),
  client_msg_id: z.string(),
  /** ISO-8601. */
  created_at: z.string(),
});
export type Message = z.infer<typeof messageSchema>;

export const SESSION_STATUSES = ['open', 'closed'] as const;

export const sessionSchema = z.object({
  id: idSchema,
  customer_id: idSchema,
  status: z.enum(SESSION_STATUSES),
  subject: z.string().nullable(),
  created_at: z.string(),
});
export type Session = z.infer<typeof sessionSchema>;
