import { describe, expect, it } from 'vitest';
import { loadEmbeddedConfig } from '../src/config.js';

describe('loadEmbeddedConfig', () => {
  it('listens on loopback unless told otherwise: its accounts have passwords everyone knows', () => {
    expect(loadEmbeddedConfig({}).HOST).toBe('127.0.0.1');
    expect(loadEmbeddedConfig({ HOST: '0.0.0.0' }).HOST).toBe('0.0.0.0');
  });
});
