import { describe, expect, it } from 'vitest';
import { displayHost } from '../src/app.js';
import { loadEmbeddedConfig } from '../src/config.js';

describe('loadEmbeddedConfig', () => {
  it('listens on loopback unless told otherwise: its accounts have passwords everyone knows', () => {
    expect(loadEmbeddedConfig({}).HOST).toBe('127.0.0.1');
    expect(loadEmbeddedConfig({ HOST: '0.0.0.0' }).HOST).toBe('0.0.0.0');
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
