import { connectNatsBus } from '@switchboard/bus';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { canListen, createTestDatabase, freePort, holdPort, TEST_NATS_URL, uniqueSubjectPrefix } from '@switchboard/testing';
import { describe, expect, it } from 'vitest';
import { loadAuthConfig, openAuthDatabase, startAuthService } from '../src/index.js';

/**
 * A start that fails late (here its ops port is taken) stops what it had started. A process exits
 * then anyway; a caller running auth in its own process (the one-process mode, tests) carries on,
 * and was left with its HTTP port held and its JWKS still answered.
 */
describe('an auth start that fails', () => {
  it('frees its HTTP port and answers nothing on NATS', async () => {
    const testDatabase = await createTestDatabase('auth-failed-start');
    const taken = await holdPort();
    const prefix = uniqueSubjectPrefix();
    const port = await freePort();
    const config = loadAuthConfig({
      DATABASE_URL: testDatabase.url,
      NATS_URL: TEST_NATS_URL,
      NATS_SUBJECT_PREFIX: prefix,
      HOST: '127.0.0.1',
      PORT: String(port),
      OPS_PORT: String(taken.port),
    });
    const logger = createLogger({ name: 'auth-failed-start', level: 'silent' });
    const subjects = createSubjects(prefix);
    const bus = await connectNatsBus({ servers: [TEST_NATS_URL], name: 'auth-failed-start', subjects, logger });
    const database = await openAuthDatabase(testDatabase.url, { poolSize: 2, logger, ensureSigningKey: true });
    try {
      await expect(startAuthService({ config, logger, bus, database })).rejects.toThrow(/EADDRINUSE/);
      expect(await canListen(port)).toBe(true);
      await expect(bus.request(subjects.authJwks, new Uint8Array(), 500)).rejects.toThrow();
    } finally {
      await database.destroy();
      await bus.close();
      await taken.release();
      await testDatabase.drop();
    }
  });
});
