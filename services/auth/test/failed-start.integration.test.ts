import { createServer, type Server } from 'node:net';
import { connectNatsBus } from '@switchboard/bus';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { createTestDatabase, freePort, type TestDatabase, uniqueSubjectPrefix } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAuthConfig, openAuthDatabase, startAuthService } from '../src/index.js';

/**
 * A start that fails late (here its ops port is taken) stops what it had started. A process exits
 * then anyway; a caller running auth in its own process (the one-process mode, tests) carries on,
 * and was left with its HTTP port held and its JWKS still answered.
 */

let testDatabase: TestDatabase;
let squatter: Server;

const listenOn = (server: Server, port: number) =>
  new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
const close = (server: Server) => new Promise((resolve) => server.close(resolve));

beforeAll(async () => {
  testDatabase = await createTestDatabase('auth-failed-start');
  squatter = createServer();
  await listenOn(squatter, 0);
});

afterAll(async () => {
  await close(squatter);
  await testDatabase?.drop();
});

describe('an auth start that fails', () => {
  it('frees its HTTP port and answers nothing on NATS', async () => {
    const address = squatter.address();
    const prefix = uniqueSubjectPrefix();
    const port = await freePort();
    const config = loadAuthConfig({
      DATABASE_URL: testDatabase.url,
      NATS_URL: 'nats://127.0.0.1:4222',
      NATS_SUBJECT_PREFIX: prefix,
      HOST: '127.0.0.1',
      PORT: String(port),
      OPS_PORT: String(typeof address === 'object' && address ? address.port : 0),
    });
    const logger = createLogger({ name: 'auth-failed-start', level: 'silent' });
    const subjects = createSubjects(prefix);
    const bus = await connectNatsBus({ servers: ['nats://127.0.0.1:4222'], name: 'auth-failed-start', subjects, logger });
    const database = await openAuthDatabase(testDatabase.url, { poolSize: 2, logger, ensureSigningKey: true });
    try {
      await expect(startAuthService({ config, logger, bus, database })).rejects.toThrow(/EADDRINUSE/);
      // Its port can be taken by another listener, and nobody answers for the keys.
      const next = createServer();
      await listenOn(next, port);
      await close(next);
      await expect(bus.request(subjects.authJwks, new Uint8Array(), 500)).rejects.toThrow();
    } finally {
      await database.destroy();
      await bus.close();
    }
  });
});
