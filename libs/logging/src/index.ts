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
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options);
}
