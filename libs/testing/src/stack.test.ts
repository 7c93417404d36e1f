import { DEFAULT_NATS_URL } from '@switchboard/config';
import { createSubjects } from '@switchboard/protocol';
import { connect } from 'nats';
import { describe, expect, it } from 'vitest';
import { startStack } from './stack.js';

describe('startStack', () => {
  it('removes the inbound stream its persistence made when it stops', async () => {
    const nc = await connect({ servers: DEFAULT_NATS_URL });
    try {
      const jsm = await nc.jetstreamManager();
      const stack = await startStack({ gateways: 0 });
      const stream = createSubjects(stack.prefix).inboundStream;
      try {
        expect((await jsm.streams.info(stream)).config.name).toBe(stream);
      } finally {
        await stack.stop();
      }
      await expect(jsm.streams.info(stream)).rejects.toThrow(/stream not found/);
    } finally {
      await nc.close();
    }
  });
});
