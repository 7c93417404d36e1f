import { describe, expect, it } from 'vitest';
import { displayHost } from '../src/app.js';
import { DEMO_ACCOUNTS, loadEmbeddedConfig } from '../src/config.js';

describe('loadEmbeddedConfig', () => {
  it('listens on loopback unless told otherwise: its accounts have passwords everyone knows', () => {
    expect(loadEmbeddedConfig({}).HOST).toBe('127.0.0.1');
    expect(loadEmbeddedConfig({ HOST: '0.0.0.0' }).HOST).toBe('0.0.0.0');
  });

  it('gives the embedded database the demo admin and agent, each overridable, the agent skippable', () => {
    expect(loadEmbeddedConfig({})).toMatchObject({ admin: DEMO_ACCOUNTS.admin, demoAgent: DEMO_ACCOUNTS.agent });
    expect(loadEmbeddedConfig({ ADMIN_PASSWORD: 'changed-password' })).toMatchObject({
      admin: { username: 'admin', password: 'changed-password' },
    });
    expect(loadEmbeddedConfig({ DEMO_AGENT_USERNAME: 'agent2' }).demoAgent).toEqual({ username: 'agent2', password: 'agent-password' });
    expect(loadEmbeddedConfig({ DEMO_AGENT_USERNAME: '' }).demoAgent).toBeUndefined();
  });

  it('refuses a demo agent the auth API would refuse, at the start rather than after it', () => {
    expect(() => loadEmbeddedConfig({ DEMO_AGENT_PASSWORD: 'short' })).toThrow(/DEMO_AGENT_PASSWORD: password must be 8 to 256 characters/);
    expect(() => loadEmbeddedConfig({ DEMO_AGENT_USERNAME: 'ab' })).toThrow(/DEMO_AGENT_USERNAME: username must be 3 to 64 characters/);
    expect(() => loadEmbeddedConfig({ DEMO_AGENT_USERNAME: 'agent one' })).toThrow(/DEMO_AGENT_USERNAME: username may hold/);
    // Skipped, it is not checked.
    expect(loadEmbeddedConfig({ DEMO_AGENT_USERNAME: '', DEMO_AGENT_PASSWORD: 'short' }).demoAgent).toBeUndefined();
  });

  it('refuses a pool of one connection, as persistence does, at the start rather than halfway through it', () => {
    expect(() => loadEmbeddedConfig({ DATABASE_POOL_SIZE: '1' })).toThrow(/DATABASE_POOL_SIZE/);
    expect(loadEmbeddedConfig({ DATABASE_POOL_SIZE: '2' }).DATABASE_POOL_SIZE).toBe(2);
  });

  it("refuses a gateway drain that would leave the other services' stops no room in the 30 s", () => {
    // Before: taken up to the gateway's 20 s, and a stop with a batch in hand outlasted the 30 s
    // and exited 1 with the embedded database still open.
    expect(() => loadEmbeddedConfig({ DRAIN_SECONDS: '20' })).toThrow(/DRAIN_SECONDS/);
    expect(() => loadEmbeddedConfig({ DRAIN_SECONDS: '6' })).toThrow(/DRAIN_SECONDS/);
    expect(loadEmbeddedConfig({ DRAIN_SECONDS: '5' }).DRAIN_SECONDS).toBe(5);
  });

  it('creates no account with a known password on a PostgreSQL server', () => {
    // Before, `npm start` with DATABASE_URL made admin / admin-password and agent / agent-password
    // in that database, which may be a production one.
    const server = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres' };
    expect(loadEmbeddedConfig(server)).toMatchObject({ admin: undefined, demoAgent: undefined });
    expect(loadEmbeddedConfig({ ...server, ADMIN_USERNAME: 'ops', ADMIN_PASSWORD: 'a-long-secret' })).toMatchObject({
      admin: { username: 'ops', password: 'a-long-secret' },
      demoAgent: undefined,
    });
    const withAgent = {
      ...server,
      ADMIN_USERNAME: 'ops',
      ADMIN_PASSWORD: 'a-long-secret',
      DEMO_AGENT_USERNAME: 'agent',
      DEMO_AGENT_PASSWORD: 'x-secret',
    };
    expect(loadEmbeddedConfig(withAgent).demoAgent).toEqual({ username: 'agent', password: 'x-secret' });
    // A name alone is not enough: its password would be the documented one.
    expect(
      loadEmbeddedConfig({ ...server, ADMIN_USERNAME: 'ops', ADMIN_PASSWORD: 'a-long-secret', DEMO_AGENT_USERNAME: 'agent' }).demoAgent,
    ).toBeUndefined();
    expect(() => loadEmbeddedConfig({ ...server, ADMIN_PASSWORD: 'a-long-secret' })).toThrow(/must be set together/);
    expect(() => loadEmbeddedConfig({ ...server, DEMO_AGENT_USERNAME: 'agent', DEMO_AGENT_PASSWORD: 'x-secret' })).toThrow(
      /needs ADMIN_USERNAME/,
    );
  });
});

describe('displayHost', () => {
  it('gives URLs a browser opens, for IPv4 and IPv6 addresses alike', () => {
    for (const [host, expected] of [
      ['127.0.0.1', 'http://127.0.0.1:2346/'],
      ['0.0.0.0', 'http://localhost:2346/'],
      ['::', 'http://localhost:2346/'],
      // Printed as `http://::1:2346/` before, which no browser opens.
      ['::1', 'http://[::1]:2346/'],
      ['fd00::5', 'http://[fd00::5]:2346/'],
    ] as const) {
      const url = `http://${displayHost(host)}:2346/`;
      expect(url).toBe(expected);
      expect(new URL(url).port).toBe('2346');
    }
  });
});
