import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  ConfigError,
  commonEnv,
  DEFAULT_DATABASE_URL,
  DEFAULT_NATS_URL,
  DEFAULT_SUBJECT_PREFIX,
  databaseEnv,
  env,
  LOG_LEVELS,
  loadConfig,
} from './index.js';

afterEach(() => {
  vi.unstubAllEnvs();
});

/** Runs `load` and returns the ConfigError it throws; fails the test if it returns or throws anything else. */
function configErrorOf(load: () => unknown): ConfigError {
  let result: unknown;
  try {
    result = load();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`expected a ConfigError, but the configuration loaded: ${JSON.stringify(result)}`);
}

/** Asserts that the error reports at least one problem and that every problem is about `name`. */
function expectProblemsOnlyFor(error: ConfigError, name: string): void {
  expect(error.problems.length).toBeGreaterThan(0);
  for (const problem of error.problems) expect(problem.startsWith(`${name}: `), problem).toBe(true);
  expect(error.message).toContain(name);
}

const serviceEnv = {
  ...commonEnv,
  ...databaseEnv,
  HOST: env.string({ default: '0.0.0.0' }),
  PORT: env.port(8080),
  WORKERS: env.integer({ default: 4, min: 1, max: 64 }),
  OFFSET: env.integer({ default: 0, min: -10, max: 10 }),
  TIMEOUT: env.duration({ default: '30s' }),
  POLL_INTERVAL: env.duration({ default: '250', unit: 'ms' }),
  RETENTION: env.duration({ default: '2', unit: 'd' }),
  DESCRIPTION: env.optionalString(),
  ALLOWED_ORIGINS: env.list(),
  FEATURES: env.list({ default: ['chat', 'presence'] }),
  MODE: env.oneOf(['fast', 'safe'], { default: 'safe' }),
  AUDIT_LOG_LEVEL: env.logLevel(),
};

const expectedDefaults = {
  NATS_URL: [DEFAULT_NATS_URL],
  NATS_SUBJECT_PREFIX: DEFAULT_SUBJECT_PREFIX,
  LOG_LEVEL: 'info',
  DATABASE_URL: DEFAULT_DATABASE_URL,
  DATABASE_POOL_SIZE: 10,
  HOST: '0.0.0.0',
  PORT: 8080,
  WORKERS: 4,
  OFFSET: 0,
  TIMEOUT: 30_000,
  POLL_INTERVAL: 250,
  RETENTION: 2 * 86_400_000,
  DESCRIPTION: undefined,
  ALLOWED_ORIGINS: [],
  FEATURES: ['chat', 'presence'],
  MODE: 'safe',
  AUDIT_LOG_LEVEL: 'info',
};

describe('loadConfig', () => {
  describe('defaults', () => {
    it('applies every default when no variable is set', () => {
      expect(loadConfig(serviceEnv, {})).toEqual(expectedDefaults);
    });

    it('treats an empty variable the same as an unset one', () => {
      const allEmpty = Object.fromEntries(Object.keys(serviceEnv).map((name) => [name, '']));

      expect(loadConfig(serviceEnv, allEmpty)).toEqual(expectedDefaults);
    });

    it('uses the documented defaults for the shared variables', () => {
      expect(loadConfig({ ...commonEnv, ...databaseEnv }, {})).toEqual({
        HOST: '0.0.0.0',
        NATS_URL: ['nats://127.0.0.1:4222'],
        NATS_SUBJECT_PREFIX: 'switchboard',
        LOG_LEVEL: 'info',
        DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres',
        DATABASE_POOL_SIZE: 10,
      });
    });

    it('leaves out variables that are not in the shape', () => {
      const config = loadConfig({ PORT: env.port(80) }, { PORT: '81', PATH: '/usr/bin', UNRELATED_SECRET: 'x' });

      expect(config).toEqual({ PORT: 81 });
    });

    it('reads process.env when no source is given', () => {
      vi.stubEnv('SWITCHBOARD_TEST_PORT', '4321');

      expect(loadConfig({ SWITCHBOARD_TEST_PORT: env.port(1) })).toEqual({ SWITCHBOARD_TEST_PORT: 4321 });
    });

    it('uses a set value instead of the default', () => {
      const config = loadConfig(serviceEnv, { HOST: '127.0.0.1', DESCRIPTION: 'edge gateway', MODE: 'fast', AUDIT_LOG_LEVEL: 'debug' });

      expect(config).toMatchObject({ HOST: '127.0.0.1', DESCRIPTION: 'edge gateway', MODE: 'fast', AUDIT_LOG_LEVEL: 'debug' });
    });
  });

  describe('integers and ports', () => {
    it.each([
      ['1', 1],
      ['17', 17],
      ['64', 64],
    ])('parses WORKERS=%j as %d', (raw, expected) => {
      expect(loadConfig(serviceEnv, { WORKERS: raw }).WORKERS).toBe(expected);
    });

    it('parses negative integers where the bounds allow them', () => {
      expect(loadConfig(serviceEnv, { OFFSET: '-10' }).OFFSET).toBe(-10);
      expect(loadConfig(serviceEnv, { OFFSET: '-3' }).OFFSET).toBe(-3);
    });

    it.each(['0', '65', '-1', '1000'])('refuses WORKERS=%j outside 1..64', (raw) => {
      const error = configErrorOf(() => loadConfig(serviceEnv, { WORKERS: raw }));

      expect(error.message).toContain('WORKERS');
      expect(error.message).toMatch(/1 to 64/);
    });

    it.each(['1.5', 'abc', '12abc', '0x10', '1e3', '+5', ' ', '99999999999999999999'])(
      'refuses WORKERS=%j as not an integer, or not one a setting can hold',
      (raw) => {
        expectProblemsOnlyFor(
          configErrorOf(() => loadConfig(serviceEnv, { WORKERS: raw })),
          'WORKERS',
        );
      },
    );

    it.each([
      ['1', 1],
      ['80', 80],
      ['8443', 8443],
      ['65535', 65535],
    ])('accepts PORT=%j', (raw, expected) => {
      expect(loadConfig(serviceEnv, { PORT: raw }).PORT).toBe(expected);
    });

    // 0 would bind a port nobody's probes or clients know.
    it.each(['0', '-0', '65536', '-1', '100000', 'http', '80.5'])('refuses PORT=%j', (raw) => {
      expectProblemsOnlyFor(
        configErrorOf(() => loadConfig(serviceEnv, { PORT: raw })),
        'PORT',
      );
    });

    it('enforces the bounds of the shared pool size', () => {
      expect(loadConfig(databaseEnv, { DATABASE_POOL_SIZE: '1000' }).DATABASE_POOL_SIZE).toBe(1000);
      expect(configErrorOf(() => loadConfig(databaseEnv, { DATABASE_POOL_SIZE: '0' })).message).toContain('DATABASE_POOL_SIZE');
      expect(configErrorOf(() => loadConfig(databaseEnv, { DATABASE_POOL_SIZE: '1001' })).message).toContain('DATABASE_POOL_SIZE');
    });
  });

  describe('durations', () => {
    it.each([
      ['1h', 3_600_000],
      ['30s', 30_000],
      ['1500ms', 1_500],
      ['15m', 900_000],
      ['7d', 7 * 86_400_000],
      ['0s', 0],
      ['45', 45_000],
      ['0', 0],
    ])('parses TIMEOUT=%j as %d milliseconds', (raw, expected) => {
      expect(loadConfig(serviceEnv, { TIMEOUT: raw }).TIMEOUT).toBe(expected);
    });

    it('reads a bare number in the unit the variable declares', () => {
      expect(loadConfig(serviceEnv, { POLL_INTERVAL: '40' }).POLL_INTERVAL).toBe(40);
      expect(loadConfig(serviceEnv, { RETENTION: '3' }).RETENTION).toBe(3 * 86_400_000);
    });

    it('reads an explicit unit regardless of the declared one', () => {
      expect(loadConfig(serviceEnv, { POLL_INTERVAL: '2s' }).POLL_INTERVAL).toBe(2_000);
      expect(loadConfig(serviceEnv, { RETENTION: '12h' }).RETENTION).toBe(12 * 3_600_000);
    });

    it('keeps a duration within the bounds the variable declares', () => {
      const bounded = { WINDOW: env.duration({ default: '15m', min: '1s', max: '30d' }) };
      expect(loadConfig(bounded, { WINDOW: '1s' }).WINDOW).toBe(1_000);
      expect(loadConfig(bounded, { WINDOW: '30d' }).WINDOW).toBe(30 * 86_400_000);
      for (const raw of ['0', '999ms', '31d']) {
        const error = configErrorOf(() => loadConfig(bounded, { WINDOW: raw }));
        expectProblemsOnlyFor(error, 'WINDOW');
        expect(error.message).toContain('expected a duration from 1s to 30d');
      }
    });

    it('refuses a bare number of seconds over a day, most likely milliseconds, and takes it with a unit', () => {
      const bounded = { TTL: env.duration({ default: '1h', min: '1s', max: '30d' }) };
      const error = configErrorOf(() => loadConfig(bounded, { TTL: '900000' }));
      expectProblemsOnlyFor(error, 'TTL');
      expect(error.message).toContain('a bare number is seconds, and 900000 s is over a day');
      expect(loadConfig(bounded, { TTL: '900000ms' }).TTL).toBe(900_000);
      expect(loadConfig(bounded, { TTL: '86400' }).TTL).toBe(86_400_000);
      expect(loadConfig(bounded, { TTL: '10d' }).TTL).toBe(10 * 86_400_000);
      // In a declared unit other than seconds, a bare number is what it says.
      expect(loadConfig(serviceEnv, { POLL_INTERVAL: '900000' }).POLL_INTERVAL).toBe(900_000);
    });

    it('refuses a bound that does not parse when the variable is declared, rather than drop it', () => {
      expect(() => env.duration({ default: '1s', min: '1.5s' })).toThrow(/1.5s/);
      expect(() => env.duration({ default: '1s', max: '1w' })).toThrow(/1w/);
    });

    it.each(['1.5h', '-1s', 'h', 'ms', '10 minutes', '1w', '1H', '1h30m', 'soon'])('refuses TIMEOUT=%j', (raw) => {
      const error = configErrorOf(() => loadConfig(serviceEnv, { TIMEOUT: raw }));

      expectProblemsOnlyFor(error, 'TIMEOUT');
      expect(error.message).toContain('duration');
    });
  });

  describe('strings', () => {
    it('refuses surrounding whitespace or a control character where the value is compared as it is', () => {
      const shape = { ISSUER: env.string({ default: 'switchboard', exact: true }), HOST: env.string({ default: '0.0.0.0' }) };
      for (const raw of ['switchboard\r', ' switchboard', 'switchboard ', 'switch\u0000board']) {
        expectProblemsOnlyFor(
          configErrorOf(() => loadConfig(shape, { ISSUER: raw })),
          'ISSUER',
        );
      }
      expect(loadConfig(shape, { ISSUER: 'https://auth.example.com/' }).ISSUER).toBe('https://auth.example.com/');
    });

    it('reads empty as the default, unless empty is a value of its own', () => {
      const shape = { NAME: env.string({ default: 'agent' }), SKIPPABLE: env.string({ default: 'agent', emptyAllowed: true }) };
      expect(loadConfig(shape, { NAME: '', SKIPPABLE: '' })).toEqual({ NAME: 'agent', SKIPPABLE: '' });
      expect(loadConfig(shape, {})).toEqual({ NAME: 'agent', SKIPPABLE: 'agent' });
    });
  });

  describe('optional URLs', () => {
    const shape = { PUBLIC_URL: env.optionalUrl({ protocols: ['http', 'https'] }) };

    it('reads a URL with one of its schemes, and empty as unset', () => {
      expect(loadConfig(shape, { PUBLIC_URL: 'https://auth.example.com' }).PUBLIC_URL).toBe('https://auth.example.com');
      expect(loadConfig(shape, { PUBLIC_URL: 'http://127.0.0.1:2347/' }).PUBLIC_URL).toBe('http://127.0.0.1:2347/');
      expect(loadConfig(shape, { PUBLIC_URL: '' }).PUBLIC_URL).toBeUndefined();
      expect(loadConfig(shape, {}).PUBLIC_URL).toBeUndefined();
    });

    // Before, taken as given: a page then asked its own host for `auth.example.com/v1/token`.
    it.each([
      'auth.example.com',
      'auth.example.com:2347',
      '/auth',
      'ftp://auth.example.com',
      // A page reads this one as a path of its own; these two name no host.
      'https:auth.example.com',
      'http://',
      'https://user@/',
    ])('refuses PUBLIC_URL=%j', (raw) => {
      const error = configErrorOf(() => loadConfig(shape, { PUBLIC_URL: raw }));
      expectProblemsOnlyFor(error, 'PUBLIC_URL');
      expect(error.message).toContain('expected a URL with scheme http or https');
    });

    it('takes a path on the same origin where paths are allowed, and not one naming another host', () => {
      const withPaths = { PUBLIC_URL: env.optionalUrl({ protocols: ['http', 'https'], paths: true }) };
      expect(loadConfig(withPaths, { PUBLIC_URL: '/auth' }).PUBLIC_URL).toBe('/auth');
      expect(loadConfig(withPaths, { PUBLIC_URL: '/' }).PUBLIC_URL).toBe('/');
      for (const raw of ['//auth.example.com', 'auth', 'auth.example.com:2347']) {
        expect(configErrorOf(() => loadConfig(withPaths, { PUBLIC_URL: raw })).message).toContain('or a path starting with /');
      }
    });
  });

  describe('lists', () => {
    it('splits a comma-separated list and trims each item', () => {
      expect(
        loadConfig(serviceEnv, { ALLOWED_ORIGINS: 'https://a.example, https://b.example ,https://c.example' }).ALLOWED_ORIGINS,
      ).toEqual(['https://a.example', 'https://b.example', 'https://c.example']);
    });

    it('drops blank items', () => {
      expect(loadConfig(serviceEnv, { ALLOWED_ORIGINS: ',a,, ,b,' }).ALLOWED_ORIGINS).toEqual(['a', 'b']);
    });

    it('refuses a value that lists nothing, rather than reading it as an empty list', () => {
      for (const raw of [',', ' , ', ',,']) {
        expectProblemsOnlyFor(
          configErrorOf(() => loadConfig(serviceEnv, { ALLOWED_ORIGINS: raw })),
          'ALLOWED_ORIGINS',
        );
      }
    });

    it('keeps a single item as a one-item list', () => {
      expect(loadConfig(serviceEnv, { FEATURES: 'chat' }).FEATURES).toEqual(['chat']);
    });

    it('replaces the default list rather than adding to it', () => {
      expect(loadConfig(serviceEnv, { FEATURES: 'typing,receipts' }).FEATURES).toEqual(['typing', 'receipts']);
    });

    it('does not let one loaded list change the default of the next load', () => {
      const first = loadConfig(serviceEnv, {});
      if (!Object.isFrozen(first.FEATURES)) first.FEATURES.push('mutated');

      expect(loadConfig(serviceEnv, {}).FEATURES).toEqual(['chat', 'presence']);
    });
  });

  describe('NATS_URL', () => {
    it('accepts a comma-separated list of NATS servers', () => {
      expect(loadConfig(commonEnv, { NATS_URL: 'nats://n1:4222, tls://n2:4222' }).NATS_URL).toEqual(['nats://n1:4222', 'tls://n2:4222']);
    });

    it.each([
      ['an http URL', 'http://n1:4222'],
      // nats.js in Node would connect to port 4222 of the host, as plain NATS.
      ['a WebSocket URL', 'wss://nats.example.com:443'],
      ['a plain WebSocket URL among good ones', 'nats://n1:4222,ws://n3:8080'],
      ['one bad URL among good ones', 'nats://n1:4222,https://n2:443'],
      ['something that is not a URL', 'n1:4222 n2:4222'],
      ['a host without a scheme', 'localhost'],
      ['only commas', ' , ,'],
    ])('refuses %s', (_name, raw) => {
      expectProblemsOnlyFor(
        configErrorOf(() => loadConfig(commonEnv, { NATS_URL: raw })),
        'NATS_URL',
      );
    });
  });

  describe('other shared variables', () => {
    it.each(['tenant-a', 'sb', 'a_b-c9'])('accepts NATS_SUBJECT_PREFIX=%j', (raw) => {
      expect(loadConfig(commonEnv, { NATS_SUBJECT_PREFIX: raw }).NATS_SUBJECT_PREFIX).toBe(raw);
    });

    it.each(['Switchboard', '9lives', '-x', 'a.b', 'a b', 'a*'])('refuses NATS_SUBJECT_PREFIX=%j', (raw) => {
      expect(configErrorOf(() => loadConfig(commonEnv, { NATS_SUBJECT_PREFIX: raw })).message).toContain('NATS_SUBJECT_PREFIX');
    });

    it('accepts every log level and refuses others', () => {
      for (const level of LOG_LEVELS) expect(loadConfig(commonEnv, { LOG_LEVEL: level }).LOG_LEVEL).toBe(level);
      expect(configErrorOf(() => loadConfig(commonEnv, { LOG_LEVEL: 'verbose' })).message).toContain('LOG_LEVEL');
      expect(configErrorOf(() => loadConfig(commonEnv, { LOG_LEVEL: 'INFO' })).message).toContain('LOG_LEVEL');
    });

    it('accepts postgres and postgresql database URLs', () => {
      expect(loadConfig(databaseEnv, { DATABASE_URL: 'postgresql://app:pw@db:5432/app' }).DATABASE_URL).toBe(
        'postgresql://app:pw@db:5432/app',
      );
      expect(loadConfig(databaseEnv, { DATABASE_URL: 'postgres://db/app' }).DATABASE_URL).toBe('postgres://db/app');
    });

    it('accepts a database URL whose host is a Unix socket in the query, as pg does', () => {
      for (const raw of ['postgres://app:pw@/app?host=/cloudsql/project:region:instance', 'postgresql:///app?host=/var/run/postgresql']) {
        expect(loadConfig(databaseEnv, { DATABASE_URL: raw }).DATABASE_URL).toBe(raw);
      }
      expect(configErrorOf(() => loadConfig(databaseEnv, { DATABASE_URL: 'mysql://app:pw@/app' })).message).toContain('DATABASE_URL');
    });
  });

  describe('credentials in URLs', () => {
    it('takes a NATS user and password percent-encoded, as the bus decodes them', () => {
      expect(loadConfig(commonEnv, { NATS_URL: 'nats://status:50%25off@nats:4222' }).NATS_URL).toEqual([
        'nats://status:50%25off@nats:4222',
      ]);
    });

    it('takes a database password with a bare "%", which pg reads as it is', () => {
      expect(loadConfig(databaseEnv, { DATABASE_URL: 'postgres://app:100%@db/app' }).DATABASE_URL).toBe('postgres://app:100%@db/app');
    });

    // Before, taken; the connection then failed with `URI malformed`, read as NATS unreachable.
    it.each([
      'nats://status:50%off@nats:4222',
      'nats://n1:4222,nats://user:%zz@n2:4222',
      // The user info runs to the last "@": a check of "u:a" alone let this through.
      'nats://u:a@b%@nats:4222',
    ])('refuses NATS_URL=<%s> with an undecodable password, without echoing it', (raw) => {
      const error = configErrorOf(() => loadConfig(commonEnv, { NATS_URL: raw }));
      expectProblemsOnlyFor(error, 'NATS_URL');
      expect(error.message).toContain('write "%" as %25');
      for (const secret of ['off@', '%zz', 'b%@']) expect(error.message).not.toContain(secret);
    });
  });

  describe('errors', () => {
    it('throws a ConfigError that names every bad variable and only those', () => {
      const error = configErrorOf(() =>
        loadConfig(serviceEnv, { PORT: 'eighty', WORKERS: '0', TIMEOUT: 'later', MODE: 'reckless', HOST: 'example.org' }),
      );

      expect(error).toBeInstanceOf(Error);
      expect(error.name).toBe('ConfigError');
      expect(error.problems.map((problem) => problem.split(':')[0]).sort()).toEqual(['MODE', 'PORT', 'TIMEOUT', 'WORKERS']);
      for (const name of ['PORT', 'WORKERS', 'TIMEOUT', 'MODE']) expect(error.message).toContain(name);
      expect(error.message).not.toContain('HOST');
    });

    it('echoes back bad values of ordinary variables', () => {
      const error = configErrorOf(() => loadConfig(serviceEnv, { PORT: 'eighty', MODE: 'reckless', LOG_LEVEL: 'chatty' }));

      expect(error.message).toContain('"eighty"');
      expect(error.message).toContain('"reckless"');
      expect(error.message).toContain('"chatty"');
    });

    it('does not echo back a bad DATABASE_URL, which may carry a password', () => {
      const secretUrl = 'mysql://app:hunter2-Sup3rS3cret@db.internal:3306/app';
      const error = configErrorOf(() => loadConfig(databaseEnv, { DATABASE_URL: secretUrl }));

      expect(error.message).toContain('DATABASE_URL');
      for (const text of [error.message, ...error.problems, String(error.stack)]) {
        expect(text).not.toContain('hunter2-Sup3rS3cret');
        expect(text).not.toContain('db.internal');
      }
    });

    it('does not echo back a bad NATS_URL, which may carry credentials', () => {
      const error = configErrorOf(() => loadConfig(commonEnv, { NATS_URL: 'http://svc:Tr0ub4dor-pw@nats.internal:4222' }));

      expect(error.message).toContain('NATS_URL');
      expect(error.message).not.toContain('Tr0ub4dor-pw');
      expect(error.message).not.toContain('nats.internal');
    });

    it.each(['JWT_PRIVATE_KEY', 'AUTH_API_KEYS', 'ADMIN_PASSWORD', 'WEBHOOK_SECRET', 'BOT_TOKEN'])(
      'does not echo back a bad value of the secret %s while still naming it',
      (name) => {
        const secretValue = 'sk_live_0123456789abcdef';
        const shape = { [name]: z.string().regex(/^-----BEGIN/, 'expected a PEM block'), PORT: env.port(80) };
        const error = configErrorOf(() => loadConfig(shape, { [name]: secretValue, PORT: 'http' }));

        expect(error.message).toContain(name);
        expect(error.message).not.toContain(secretValue);
        expect(error.problems.join('\n')).not.toContain(secretValue);
        // The ordinary variable in the same error is still echoed, so the redaction is per variable.
        expect(error.message).toContain('"http"');
      },
    );

    it('does not echo back a secret that fails an integer check', () => {
      const shape = { SESSION_SECRET_LENGTH_KEY: env.integer({ default: 32, min: 16, max: 64 }) };
      const error = configErrorOf(() => loadConfig(shape, { SESSION_SECRET_LENGTH_KEY: 'zq-9ru2-secret-value' }));

      expect(error.message).toContain('SESSION_SECRET_LENGTH_KEY');
      expect(error.message).not.toContain('zq-9ru2-secret-value');
    });

    it('reports a missing required variable without a value', () => {
      const error = configErrorOf(() => loadConfig({ REQUIRED_NAME: z.string() }, {}));

      expect(error.problems).toHaveLength(1);
      expect(error.problems[0]).toMatch(/^REQUIRED_NAME: /);
      expect(error.message).not.toContain('(got');
    });
  });

  describe('the result', () => {
    it('is frozen', () => {
      const config = loadConfig(serviceEnv, { PORT: '81' });

      expect(Object.isFrozen(config)).toBe(true);
      expect(() => {
        (config as { PORT: number }).PORT = 82;
      }).toThrow(TypeError);
      expect(() => {
        (config as Record<string, unknown>).EXTRA = 'x';
      }).toThrow(TypeError);
      expect(config.PORT).toBe(81);
    });

    it('is a new object on every load', () => {
      const first = loadConfig(serviceEnv, { PORT: '81' });
      const second = loadConfig(serviceEnv, { PORT: '82' });

      expect(first.PORT).toBe(81);
      expect(second.PORT).toBe(82);
    });
  });
});
