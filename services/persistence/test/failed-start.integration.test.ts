import { createLogger } from '@switchboard/logging';
import { holdPort, TEST_NATS_URL } from '@switchboard/testing';
import { describe, expect, it } from 'vitest';
import { loadPersistenceConfig, openPersistenceDatabase, startPersistenceService } from '../src/index.js';
import { sleep, startHarness } from './support.js';

/**
 * A start that fails late (here its ops port is taken) stops what it had started. A process exits
 * then anyway; a caller running persistence in its own process (the one-process mode, tests)
 * carries on, and was left with a consumer storing messages behind its back.
 */
describe('a persistence start that fails', () => {
  it('leaves no consumer or service running behind it', async () => {
    const harness = await startHarness('failed-start');
    const taken = await holdPort();
    const config = loadPersistenceConfig({
      DATABASE_URL: harness.database.url,
      NATS_URL: TEST_NATS_URL,
      NATS_SUBJECT_PREFIX: harness.subjects.prefix,
      OPS_PORT: String(taken.port),
      HOST: '127.0.0.1',
    });
    const logger = createLogger({ name: 'failed-start', level: 'silent' });
    const database = await openPersistenceDatabase(harness.database.url, { poolSize: 2, logger });
    try {
      await expect(startPersistenceService({ config, logger, bus: harness.bus, database })).rejects.toThrow(/EADDRINUSE/);

      // Migrated, with its stream made, but nobody consumes it: the message waits for a start that works.
      const [sessionId = 0] = await harness.createSessions(1);
      await harness.publish(sessionId, 'after-the-failed-start');
      await sleep(1_500);
      expect(await harness.stored()).toEqual([]);
      const heads = new TextEncoder().encode(JSON.stringify({ session_ids: [sessionId] }));
      await expect(harness.bus.request(harness.subjects.persistence('sessions.heads'), heads, 500)).rejects.toThrow();
    } finally {
      await database.destroy();
      await taken.release();
      await harness.close();
    }
  });
});
