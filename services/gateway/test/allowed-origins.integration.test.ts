import { ConfigError } from '@switchboard/config';
import { type ServiceProcess, type Stack, startStack, TestClient, TestClients } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadGatewayConfig } from '../src/config.js';

/** ALLOWED_ORIGINS as operators write it: `*` for any origin, entries compared as the origins browsers send. */

let stack: Stack;
let anyOrigin: ServiceProcess;
let oneOrigin: ServiceProcess;
const clients = new TestClients();
const wsUrl = (gateway: ServiceProcess) => `ws://127.0.0.1:${gateway.port}/ws`;

beforeAll(async () => {
  stack = await startStack({ gateways: 0 });
  anyOrigin = await stack.startGateway({ ALLOWED_ORIGINS: '*' });
  oneOrigin = await stack.startGateway({ ALLOWED_ORIGINS: 'https://Chat.Example.com/' });
});

afterAll(async () => {
  await clients.closeAll();
  await stack?.stop();
});

describe('ALLOWED_ORIGINS on the upgrade', () => {
  it('accepts any Origin with *', async () => {
    for (const origin of ['http://x', 'https://chat.example.com', 'null']) {
      const client = await clients.connect(wsUrl(anyOrigin), { origin });
      expect(client.frames[0]?.type).toBe('connected');
    }
  });

  it('compares an entry as an origin, whatever its case or trailing slash', async () => {
    const client = await clients.connect(wsUrl(oneOrigin), { origin: 'https://chat.example.com' });
    expect(client.frames[0]?.type).toBe('connected');
    await expect(TestClient.connect(wsUrl(oneOrigin), { origin: 'https://evil.example' })).rejects.toThrow(/403/);
    await expect(TestClient.connect(wsUrl(oneOrigin), { origin: 'http://chat.example.com' })).rejects.toThrow(/403/);
  });
});

describe('ALLOWED_ORIGINS in the configuration', () => {
  const allowed = (value: string) => loadGatewayConfig({ ALLOWED_ORIGINS: value }).allowedOrigins;

  it('normalises each entry to the origin a browser sends', () => {
    expect(allowed('https://Chat.Example.com/, http://localhost:8080, https://support.example.com:443')).toEqual([
      'https://chat.example.com',
      'http://localhost:8080',
      'https://support.example.com',
    ]);
    expect(allowed('*')).toEqual(['*']);
    expect(allowed('capacitor://localhost')).toEqual(['capacitor://localhost']);
  });

  it.each([
    'chat.example.com',
    'https://chat.example.com/app',
    'https://chat.example.com/?a=1',
    'localhost:8080',
    'null',
    'https://chat.example.com/*',
  ])('refuses %j at startup as not an origin', (value) => {
    expect(() => allowed(value)).toThrow(ConfigError);
    expect(() => allowed(value)).toThrow(/ALLOWED_ORIGINS: .* is not an origin/);
  });

  it.each(['https://*.example.com', 'https://chat.example.com, *://example.com'])(
    'refuses %j at startup: a wildcard within an origin would match no browser',
    (value) => {
      expect(() => allowed(value)).toThrow(/ALLOWED_ORIGINS: .*wildcards within an origin are not supported/);
    },
  );
});
