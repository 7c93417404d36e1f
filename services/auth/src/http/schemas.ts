import { hasLoneSurrogate, isStorableText, ROLES } from '@switchboard/protocol';

import { z } from 'zod';

/** Bodies of the auth API (contract §2), validated by Fastify through zod before a handler runs. */

export const usernameSchema = z
  .string()
  .min(3, 'username must be 3 to 64 characters')
  .max(64, 'username must be 3 to 64 characters')
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'username may hold letters, digits, ".", "_" and "-", starting with a letter or digit');

/**
 * Lengths here are in characters as the contract counts them: zod counts Unicode code points, so
 * an emoji is one character, not two UTF-16 units. No lone surrogate in a password: argon2 hashes
 * its UTF-8, in which every lone surrogate becomes U+FFFD, so passwords differing only in them
 * would all be one.
 */
export const passwordSchema = z
  .string()
  .min(8, 'password must be 8 to 256 characters')
  .max(256, 'password must be 8 to 256 characters')
  .refine((value) => !hasLoneSurrogate(value), 'password must be well-formed Unicode (no lone surrogates)');

const displayNameSchema = z
  .string()
  .trim()
  .min(1, 'display_name must be 1 to 100 characters')
  .max(100, 'display_name must be 1 to 100 characters')
  .refine(isStorableText, 'display_name must not contain NUL characters or lone surrogates');

/**
 * An optional field that may also be sent as null, taken as absent: serialisers of other languages
 * (Go without `omitempty`, Jackson, System.Text.Json) write an unset field that way.
 */
const absentIfNull = <T extends z.ZodType>(schema: T) => z.preprocess((value) => (value === null ? undefined : value), schema);

/**
 * Unknown fields are refused, unlike on the WebSocket side: a misspelt optional field
 * (`displayName`) would otherwise create the account without it, silently.
 */
export const createUserBody = z.strictObject({
  username: usernameSchema,
  password: passwordSchema,
  role: absentIfNull(z.enum(ROLES).default('user')),
  display_name: absentIfNull(displayNameSchema.optional()),
});
export type CreateUserBody = z.infer<typeof createUserBody>;

export const tokenBody = z.strictObject({
  // Not the registration rules: a login with any string is a wrong credential (401), not a 400.
  username: z.string().min(1).max(256),
  password: z.string().min(1).max(1024),
});
export type TokenBody = z.infer<typeof tokenBody>;

export const serviceTokenBody = z.strictObject({
  external_id: z
    .string()
    .min(1, 'external_id must be 1 to 128 characters')
    .max(128, 'external_id must be 1 to 128 characters')
    .refine(isStorableText, 'external_id must not contain NUL characters or lone surrogates'),
  role: z.enum(ROLES),
  display_name: absentIfNull(displayNameSchema.optional()),
});
export type ServiceTokenBody = z.infer<typeof serviceTokenBody>;

/** `PATCH /v1/users/:id`: what an admin changes of an account; at least one field. */
export const updateUserBody = z
  .strictObject({
    password: absentIfNull(passwordSchema.optional()),
    role: absentIfNull(z.enum(ROLES).optional()),
    display_name: absentIfNull(displayNameSchema.optional()),
    disabled: absentIfNull(z.boolean().optional()),
  })
  .refine(
    (body) => Object.values(body).some((value) => value !== undefined),
    'give at least one of password, role, display_name, disabled',
  );
export type UpdateUserBody = z.infer<typeof updateUserBody>;

/** A user id as the API writes it: decimal digits only (not `0x1F`, `1e3` or ` 7 `, which a number's parsing takes). */
export const userIdParams = z.strictObject({
  id: z
    .string()
    .regex(/^[1-9][0-9]{0,15}$/, 'id must be a user id')
    .transform(Number)
    .refine(Number.isSafeInteger, 'id must be a user id'),
});
