import { describe, expect, it } from 'vitest';
import { jetStreamDurability } from '../src/scenarios.js';

describe('jetStreamDurability', () => {
  it('says that a NATS without sync_interval acknowledges before it flushes', () => {
    expect(jetStreamDurability('2.9.10')).toMatchObject({ nats_server: '2.9.10', jetstream_sync: expect.stringMatching(/every 2 min/) });
  });

  it('does not claim a sync setting it cannot read', () => {
    expect(jetStreamDurability('2.10.22').jetstream_sync).toMatch(/not readable/);
    expect(jetStreamDurability('').nats_server).toBe('unknown');
  });
});
