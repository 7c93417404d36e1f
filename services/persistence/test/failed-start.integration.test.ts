import { createServer, type Server } from 'node:net';
import { createLogger } from '@switchboard/logging';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPersistenceConfig, openPersistenceDatabase, startPersistenceService } from '../src/index.js';
import { type Harness, sleep, startHarness } from './support.js';

/**
 * A start that fails late (here its ops port is taken) stops what it had started. A process exits
 * then anyway; a caller running persistence in its own process (the one-process mode, tests)
 * carries on, and was left with a consumer storing messages behind its back.
 */

let harness: Harness;
let squatter: Server;

beforeAll(async () => {
  harness = await startHarness('failed-start');
  squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  await new Promise((resolve) => squatter?.close(resolve));
  await harness?.close();
});

describe('a persistence start that fails', () => {
  it('leaves no consumer or service running behind it', async () => {
    const address = squatter.address();
    const opsPort = typeof address === 'object' && address ? address.port : 0;
    const config = loadPersistenceConfig({
      DATABASE_URL: harness.database.url,
      NATS_URL: 'nats://127.0.0.1:4222',
      NATS_SUBJECT_PREFIX: harness.subjects.prefix,
      OPS_PORT: String(opsPort),
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
      await expect(
        harness.bus.request(harness.subjects.persistence('sessions.heads'), new TextEncoder().encode('{"session_ids":[1]}'), 500),
      ).rejects.toThrow();
    } finally {
      await database.destroy();
    }
  });
});
