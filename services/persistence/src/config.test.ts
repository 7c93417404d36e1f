import { ConfigError } from '@switchboard/config';
import { describe, expect, it } from 'vitest';
import { loadPersistenceConfig } from './config.js';

const problemsOf = (source: NodeJS.ProcessEnv): readonly string[] => {
  try {
    loadPersistenceConfig(source);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('the configuration was accepted');
};

describe('loadPersistenceConfig', () => {
  it('reads the inbound stream settings', () => {
    expect(loadPersistenceConfig({ INBOUND_ACK_WAIT: '30s', INBOUND_MAX_AGE: '1d' }).inbound).toMatchObject({
      ackWaitMs: 30_000,
      duplicateWindowMs: 120_000,
      maxAgeMs: 86_400_000,
    });
  });

  it('refuses an ack wait too short for a commit, which would have JetStream redeliver every message', () => {
    expect(problemsOf({ INBOUND_ACK_WAIT: '100ms' })).toEqual([expect.stringMatching(/^INBOUND_ACK_WAIT: expected a duration from 1s/)]);
  });

  it('refuses a pool of one connection, which the API would take from the consumer storing messages', () => {
    expect(problemsOf({ DATABASE_POOL_SIZE: '1' })).toEqual([
      expect.stringMatching(/^DATABASE_POOL_SIZE: expected at least 2 for persistence/),
    ]);
    expect(loadPersistenceConfig({ DATABASE_POOL_SIZE: '2' }).databasePoolSize).toBe(2);
  });

  it('refuses a de-duplication window longer than the max age, which JetStream would refuse at start', () => {
    expect(problemsOf({ INBOUND_DUPLICATE_WINDOW: '10m', INBOUND_MAX_AGE: '5m' })).toEqual([
      'INBOUND_DUPLICATE_WINDOW: expected at most INBOUND_MAX_AGE',
    ]);
  });
});
