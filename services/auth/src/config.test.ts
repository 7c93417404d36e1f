import { describe, expect, it } from 'vitest';
import { loadAuthConfig, trustProxySetting } from './config.js';

const base = { DATABASE_URL: 'postgres://localhost/auth' };

describe('TRUST_PROXY', () => {
  it('is off by default', () => {
    expect(loadAuthConfig(base).trustProxy).toBe(false);
  });

  it('takes true, false, or a list of proxy addresses, CIDRs and presets', () => {
    expect(trustProxySetting('true')).toBe(true);
    expect(trustProxySetting(' false ')).toBe(false);
    expect(trustProxySetting('uniquelocal')).toEqual(['uniquelocal']);
    expect(trustProxySetting('10.0.0.0/8, 192.168.1.7,fd00::/8, loopback')).toEqual(['10.0.0.0/8', '192.168.1.7', 'fd00::/8', 'loopback']);
    expect(loadAuthConfig({ ...base, TRUST_PROXY: '10.1.0.0/16' }).trustProxy).toEqual(['10.1.0.0/16']);
  });

  it('refuses anything else at start', () => {
    for (const bad of ['1', 'yes', '10.0.0.0/33', 'fd00::/129', 'proxy.example.com', '10.0.0.0/8/1', ',']) {
      expect(trustProxySetting(bad), bad).toBeUndefined();
    }
    expect(() => loadAuthConfig({ ...base, TRUST_PROXY: '2' })).toThrow(/TRUST_PROXY/);
  });
});

describe('AUTH_API_KEYS', () => {
  it('refuses a key shorter than 16 characters, which could be guessed: wrong keys are not throttled', () => {
    expect(loadAuthConfig({ ...base, AUTH_API_KEYS: '0123456789abcdef, fedcba9876543210' }).apiKeys).toEqual([
      '0123456789abcdef',
      'fedcba9876543210',
    ]);
    expect(() => loadAuthConfig({ ...base, AUTH_API_KEYS: '0123456789abcdef,demo' })).toThrow(
      /AUTH_API_KEYS: each key must be at least 16/,
    );
  });
});

describe('ADMIN_USERNAME', () => {
  it('follows the rules of every username, so that the admin can log in with it', () => {
    expect(loadAuthConfig({ ...base, ADMIN_USERNAME: 'root-admin', ADMIN_PASSWORD: 'secret-password' }).admin?.username).toBe('root-admin');
    for (const bad of ['ad', 'admin user', 'ädmin', '.admin']) {
      expect(() => loadAuthConfig({ ...base, ADMIN_USERNAME: bad, ADMIN_PASSWORD: 'secret-password' }), bad).toThrow(
        /ADMIN_USERNAME: username/,
      );
    }
  });
});

describe('ADMIN_PASSWORD', () => {
  it('follows the rules of every password: long enough to hold against guessing, short enough to log in with', () => {
    expect(loadAuthConfig({ ...base, ADMIN_USERNAME: 'root-admin', ADMIN_PASSWORD: '12345678' }).admin?.password).toBe('12345678');
    expect(loadAuthConfig({ ...base, ADMIN_USERNAME: 'root-admin', ADMIN_PASSWORD: 'p'.repeat(1024) }).admin?.password).toHaveLength(1024);
    for (const bad of ['x', '1234567', 'p'.repeat(1025)]) {
      expect(() => loadAuthConfig({ ...base, ADMIN_USERNAME: 'root-admin', ADMIN_PASSWORD: bad }), bad).toThrow(/ADMIN_PASSWORD: password/);
    }
  });
});

describe('CORS_ORIGINS', () => {
  it('keeps each origin as browsers send it, and refuses what is not one', () => {
    expect(loadAuthConfig(base).corsOrigins).toEqual(['*']);
    expect(loadAuthConfig({ ...base, CORS_ORIGINS: 'https://Chat.Example.com/, http://localhost:5173' }).corsOrigins).toEqual([
      'https://chat.example.com',
      'http://localhost:5173',
    ]);
    for (const bad of ['chat.example.com', 'https://chat.example.com/app', 'https://user@chat.example.com']) {
      expect(() => loadAuthConfig({ ...base, CORS_ORIGINS: bad }), bad).toThrow(/CORS_ORIGINS/);
    }
  });
});
