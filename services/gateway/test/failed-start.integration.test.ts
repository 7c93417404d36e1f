import { connectNatsBus } from '@switchboard/bus';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { canListen, freePort, holdPort, TEST_NATS_URL, uniqueSubjectPrefix } from '@switchboard/testing';
import { describe, expect, it } from 'vitest';
import { loadGatewayConfig, startGateway } from '../src/index.js';

/**
 * A start that fails late (here its ops port is taken) stops what it had started. A process exits
 * then anyway; a caller running the gateway in its own process (the one-process mode, tests)
 * carries on, and must not be left with its WebSocket port held or its status still answered.
 */
describe('a gateway start that fails', () => {
  it('frees its WebSocket port and answers nothing on NATS', async () => {
    const taken = await holdPort();
    const prefix = uniqueSubjectPrefix();
    const port = await freePort();
    const config = loadGatewayConfig({
      NATS_URL: TEST_NATS_URL,
      NATS_SUBJECT_PREFIX: prefix,
      HOST: '127.0.0.1',
      PORT: String(port),
      OPS_PORT: String(taken.port),
    });
    const logger = createLogger({ name: 'gateway-failed-start', level: 'silent' });
    const subjects = createSubjects(prefix);
    const bus = await connectNatsBus({ servers: [TEST_NATS_URL], name: 'gateway-failed-start', subjects, logger });
    try {
      await expect(startGateway({ config, logger, bus })).rejects.toThrow(/EADDRINUSE/);
      expect(await canListen(port)).toBe(true);
      await expect(bus.request(subjects.gatewayStatus, new Uint8Array(), 500)).rejects.toThrow();
    } finally {
      await bus.close();
      await taken.release();
    }
  });
});
