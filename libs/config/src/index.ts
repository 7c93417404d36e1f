import { z } from 'zod';

/**
 * Environment parsing shared by every service: each service declares the variables it reads
 * as a zod shape keyed by variable name, and `loadConfig` parses `process.env` once into a
 * frozen object, or throws a `ConfigError` naming every bad variable.
 */

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly problems: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`, options);
  }
}

/** Unset and empty variables both mean "use the default". */
const unsetIfEmpty = (value: unknown) => (value === '' ? undefined : value);

function integer(opts: { default: number; min?: number; max?: number }) {
  const min = opts.min ?? Number.MIN_SAFE_INTEGER;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  return z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .regex(/^-?\d+$/, `expected an integer from ${min} to ${max}`)
      .transform(Number)
      .pipe(z.number().int().min(min, `expected an integer from ${min} to ${max}`).max(max, `expected an integer from ${min} to ${max}`))
      .default(opts.default),
  );
}

const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
/** The most seconds a duration takes without a unit: one day. */
const BARE_SECONDS_MAX = 86_400;

/** A duration such as `3600` (in the given default unit), `1500ms`, `30s`, `15m`, `1h`, `7d`; parsed to milliseconds. */
function duration(opts: { default: string; unit?: keyof typeof DURATION_UNITS; min?: string; max?: string }) {
  const unit = opts.unit ?? 's';
  const toMs = (raw: string): number | undefined => {
    const match = /^(\d+)(ms|s|m|h|d)?$/.exec(raw.trim());
    return match ? Number(match[1]) * DURATION_UNITS[(match[2] as keyof typeof DURATION_UNITS | undefined) ?? unit] : undefined;
  };
  const bound = (raw: string): number => {
    const ms = toMs(raw);
    // A bound that does not parse would be no bound at all.
    if (ms === undefined) throw new TypeError(`duration bound ${raw} does not parse`);
    return ms;
  };
  // Bounds keep values that parse but cannot work out (a login window of 0 that throttles nothing, an ack wait shorter than a commit).
  const min = opts.min === undefined ? 0 : bound(opts.min);
  const max = opts.max === undefined ? Number.MAX_SAFE_INTEGER : bound(opts.max);
  const range = `${opts.min ?? '0'} to ${opts.max ?? 'any length'}`;
  const parse = (raw: string, ctx: z.RefinementCtx) => {
    const ms = toMs(raw);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: 'expected a duration such as 30s, 15m, 1h or a number of seconds' });
      return z.NEVER;
    }
    // A bare number is seconds; one over a day is most likely milliseconds (as the gateway's *_MS
    // variables are), which read as seconds would pass a wide bound a thousand times too long.
    if (unit === 's' && /^\d+$/.test(raw.trim()) && ms > BARE_SECONDS_MAX * 1000) {
      ctx.addIssue({
        code: 'custom',
        message: `a bare number is seconds, and ${raw.trim()} s is over a day: give a unit (${raw.trim()}ms, 15m, 7d)`,
      });
      return z.NEVER;
    }
    if (ms < min || ms > max) {
      ctx.addIssue({ code: 'custom', message: `expected a duration from ${range}` });
      return z.NEVER;
    }
    return ms;
  };
  return z.preprocess(unsetIfEmpty, z.string().default(opts.default).transform(parse));
}

/**
 * A string; empty means the default unless `emptyAllowed`, where empty is a value of its own (such
 * as "none"). With `exact`, one with surrounding whitespace or control characters (a CR from an env
 * file with CRLF line endings) is refused: a value compared as it is, such as a token's issuer,
 * would otherwise match nothing while everything reports ready.
 */
function string(opts: { default: string; emptyAllowed?: boolean; exact?: boolean }) {
  const base = opts.exact
    ? z
        .string()
        .refine((value) => value.trim() === value && !/\p{Cc}/u.test(value), 'expected no surrounding whitespace or control characters')
    : z.string();
  return opts.emptyAllowed ? base.default(opts.default) : z.preprocess(unsetIfEmpty, base.default(opts.default));
}

function optionalString() {
  return z.preprocess(unsetIfEmpty, z.string().optional());
}

/**
 * A comma-separated list; blanks are dropped. A value that lists nothing (`,`) is refused rather
 * than read as unset: for a list of allowed origins, an empty list means any origin.
 */
function list(opts: { default?: string[] } = {}) {
  return z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .transform((raw) =>
        raw
          .split(',')
          .map((item) => item.trim())
          .filter((item) => item.length > 0),
      )
      .refine((items) => items.length > 0, 'lists nothing; leave it unset for the default')
      .default(opts.default ?? []),
  );
}

/**
 * The scheme of a URL, also of one without a host, as libpq and pg take it: a Unix socket given in
 * the query (`postgres://user@/db?host=/cloudsql/project:region:instance`), which the WHATWG
 * parser refuses.
 */
function schemeOf(value: string): string | undefined {
  for (const candidate of [value, value.replace(/^([a-z][a-z0-9+.-]*:\/\/(?:[^@/]*@)?)(?=[/?]|$)/i, '$1localhost')]) {
    try {
      return new URL(candidate).protocol.replace(/:$/, '');
    } catch {
      // the next candidate
    }
  }
  return undefined;
}

/**
 * Whether the user and password of a NATS URL decode as the bus decodes them
 * (`decodeURIComponent`): a `%` not followed by two hex digits passes the URL parser, then failed
 * the connection with `URI malformed`, which read as NATS being unreachable. (pg takes such a `%`
 * as it is, so DATABASE_URL is not checked.) The user info runs to the authority's last `@`.
 */
function userinfoDecodes(value: string): boolean {
  const userinfo = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)@/i.exec(value)?.[1];
  if (userinfo === undefined) return true;
  try {
    decodeURIComponent(userinfo);
    return true;
  } catch {
    return false;
  }
}

const USERINFO_PROBLEM = 'its user or password has a "%" that is not a percent-encoding of UTF-8: write "%" as %25';

function urlList(opts: { default: string; protocols: readonly string[] }) {
  return list({ default: opts.default.split(',') }).pipe(
    z
      .array(
        z
          .string()
          .refine(
            (value) => opts.protocols.includes(schemeOf(value) ?? ''),
            `expected comma-separated URLs with scheme ${opts.protocols.join(' or ')}`,
          )
          .refine(userinfoDecodes, USERINFO_PROBLEM),
      )
      .min(1, 'expected at least one URL'),
  );
}

function url(opts: { default: string; protocols: readonly string[] }) {
  return z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .default(opts.default)
      .refine((value) => opts.protocols.includes(schemeOf(value) ?? ''), `expected a URL with scheme ${opts.protocols.join(' or ')}`),
  );
}

/**
 * A URL written out whole, `scheme://host…`, with one of `protocols`: not `https:host` (which a
 * page reads as a path of its own) nor one without a host.
 */
function isAbsoluteUrl(value: string, protocols: readonly string[]): boolean {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return false;
  try {
    const url = new URL(value);
    return url.host !== '' && protocols.includes(url.protocol.replace(/:$/, ''));
  } catch {
    return false;
  }
}

/**
 * A URL with one of `protocols`, or unset; with `paths`, also a path on the same origin (`/auth`,
 * not `//host`, which names another one).
 */
function optionalUrl(opts: { protocols: readonly string[]; paths?: boolean }) {
  const problem = `expected a URL with scheme ${opts.protocols.join(' or ')}${opts.paths ? ', or a path starting with /' : ''}`;
  return z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .refine((value) => isAbsoluteUrl(value, opts.protocols) || (opts.paths === true && /^\/(?!\/)/.test(value)), problem)
      .optional(),
  );
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T, opts: { default: T[number] }) {
  return z.preprocess(unsetIfEmpty, z.enum(values).default(opts.default as never));
}

/**
 * An origin as browsers send it in `Origin`: `https://Chat.Example.com/` becomes
 * `https://chat.example.com`, a default port is dropped. `*` stays `*`. Undefined for anything
 * that is not an origin: no scheme or host, a wildcard host, or a path, query, fragment or credentials.
 */
export function normaliseOrigin(entry: string): string | undefined {
  if (entry === '*') return entry;
  let url: URL;
  try {
    url = new URL(entry);
  } catch {
    return undefined;
  }
  if (url.host === '' || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') return undefined;
  // URL parsing takes `https://*.example.com`, which no browser sends: as a literal it would match nothing.
  if (url.host.includes('*')) return undefined;
  if (url.pathname !== '/' && url.pathname !== '') return undefined;
  // Schemes without a URL origin of their own (an app's `capacitor://localhost`) are kept as scheme and host.
  return url.origin === 'null' ? `${url.protocol}//${url.host.toLowerCase()}` : url.origin;
}

/** A `*` in the scheme or the host (`https://*.example.com`), not in a path (`https://chat.example.com/*`). */
const hasWildcardHost = (entry: string) => entry.startsWith('*://') || /^[^:/]*:\/\/[^/?#]*\*/.test(entry);

/**
 * Comma-separated origins, each as browsers send it (see `normaliseOrigin`), or `*`: compared as
 * written, `https://Chat.Example.com/` would never match. Anything that is not an origin is refused.
 */
function originList(opts: { default?: string[] } = {}) {
  return list(opts).transform((entries, ctx) => {
    const origins = entries.map(normaliseOrigin);
    for (const [index, origin] of origins.entries()) {
      if (origin === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: hasWildcardHost(entries[index] ?? '')
            ? `${JSON.stringify(entries[index])}: wildcards within an origin are not supported; list each origin, or set * alone`
            : `${JSON.stringify(entries[index])} is not an origin; expected * or origins such as https://chat.example.com`,
        });
      }
    }
    return origins.filter((origin) => origin !== undefined);
  });
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const env = {
  integer,
  // Not 0, which would bind a port nobody's probes or clients know.
  port: (defaultPort: number) => integer({ default: defaultPort, min: 1, max: 65535 }),
  duration,
  string,
  optionalString,
  list,
  originList,
  url,
  optionalUrl,
  urlList,
  oneOf,
  logLevel: () => oneOf(LOG_LEVELS, { default: 'info' }),
};

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
export const DEFAULT_SUBJECT_PREFIX = 'switchboard';

/** Variables every service reads. */
export const commonEnv = {
  /** The address every port binds to. */
  HOST: string({ default: '0.0.0.0' }),
  /** `nats://` or `tls://` (TLS required); nats.js in Node has no WebSocket transport, so not `ws://`/`wss://`. */
  NATS_URL: urlList({ default: DEFAULT_NATS_URL, protocols: ['nats', 'tls'] }),
  /** Namespaces every subject, stream and service name, so several installations can share one NATS account. */
  NATS_SUBJECT_PREFIX: z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .regex(/^[a-z][a-z0-9_-]*$/, 'expected lowercase letters, digits, - and _, starting with a letter')
      .default(DEFAULT_SUBJECT_PREFIX),
  ),
  LOG_LEVEL: oneOf(LOG_LEVELS, { default: 'info' }),
};

/** The settings every service derives from `commonEnv`. */
export function commonSettings(raw: { HOST: string; NATS_URL: string[]; NATS_SUBJECT_PREFIX: string; LOG_LEVEL: LogLevel }) {
  return { host: raw.HOST, natsServers: raw.NATS_URL, subjectPrefix: raw.NATS_SUBJECT_PREFIX, logLevel: raw.LOG_LEVEL };
}

export const databaseEnv = {
  DATABASE_URL: url({ default: DEFAULT_DATABASE_URL, protocols: ['postgres', 'postgresql'] }),
  DATABASE_POOL_SIZE: integer({ default: 10, min: 1, max: 1000 }),
};

/** Variables whose values must never be echoed back in an error. */
const SECRET_NAME = /KEY|PASSWORD|SECRET|TOKEN|DATABASE_URL|NATS_URL/;

/**
 * Parses `source` against `shape` and returns a frozen object. Variables not in the shape are ignored.
 * @throws ConfigError listing each bad variable by name.
 */
export function loadConfig<Shape extends z.ZodRawShape>(
  shape: Shape,
  source: NodeJS.ProcessEnv = process.env,
): Readonly<z.output<z.ZodObject<Shape>>> {
  const result = z.object(shape).safeParse(source);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const variable = String(issue.path[0] ?? '(environment)');
      const raw = source[variable];
      const shown = raw === undefined || SECRET_NAME.test(variable) ? '' : ` (got ${JSON.stringify(raw)})`;
      return `${variable}: ${issue.message}${shown}`;
    });
    throw new ConfigError(problems);
  }
  return Object.freeze(result.data);
}
