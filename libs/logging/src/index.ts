import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths redacted from every log line. Tokens, passwords, API keys and authorization headers must
 * never reach a log, whoever logs them (our code, Fastify's request logger, an error's cause).
 */
export const REDACT_PATHS = [
  'password',
  'token',
  'access_token',
  'authorization',
  'apiKey',
  '*.password',
  '*.token',
  '*.access_token',
  '*.authorization',
  '*.apiKey',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["sec-websocket-protocol"]',
  'res.headers["set-cookie"]',
] as const;

/** The URL without its query string. */
const withoutQuery = (url: unknown) => (typeof url === 'string' ? url.split('?')[0] : url);

/**
 * Requests as Fastify's request log shows them, but with the query string cut off the URL:
 * clients sometimes put a token there (`?access_token=`, RFC 6750 §2.3), and no Switchboard API
 * takes query parameters, so the path is all a log needs. A serializer of the root logger
 * overrides Fastify's own for its child loggers.
 */
function serializeRequest(req: unknown): unknown {
  if (typeof req !== 'object' || req === null) return req;
  const request = req as {
    method?: unknown;
    url?: unknown;
    host?: unknown;
    ip?: unknown;
    headers?: { host?: unknown };
    socket?: { remoteAddress?: unknown; remotePort?: unknown };
  };
  return {
    method: request.method,
    url: withoutQuery(request.url),
    host: request.host ?? request.headers?.host,
    remoteAddress: request.ip ?? request.socket?.remoteAddress,
    remotePort: request.socket?.remotePort,
  };
}

export interface CreateLoggerOptions {
  /** The service name, added to every line as `service`. */
  name: string;
  level?: string;
  /** Where to write; stdout by default. Tests pass a stream to capture lines. */
  destination?: pino.DestinationStream;
}

/** The one root logger of a process. Modules take child loggers: `logger.child({ module: 'http' })`. */
export function createLogger({ name, level = 'info', destination }: CreateLoggerOptions): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    serializers: { req: serializeRequest },
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options);
}
