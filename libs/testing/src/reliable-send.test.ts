import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendReliably } from './reliable-send.js';
import { startStandInGateway } from './stand-in-gateway.js';
import { TestClient } from './ws-client.js';

/**
 * A stand-in gateway that answers each send by its content: the first attempt of `flaky` with
 * `unavailable`, every attempt of `broken` with `internal`, and anything else with an ack.
 */
let gateway: Awaited<ReturnType<typeof startStandInGateway>>;
const attempts = new Map<string, number>();

beforeAll(async () => {
  gateway = await startStandInGateway((socket, frame) => {
    const id = String(frame.client_msg_id);
    const attempt = (attempts.get(id) ?? 0) + 1;
    attempts.set(id, attempt);
    const code = frame.content === 'broken' ? 'internal' : frame.content === 'flaky' && attempt === 1 ? 'unavailable' : undefined;
    const reply = code
      ? { type: 'error', code, message: `${code} for the test`, client_msg_id: id }
      : { type: 'message_ack', client_msg_id: id, session_id: frame.session_id, seq: 1, message_id: 1 };
    socket.send(JSON.stringify(reply));
  });
});

afterAll(async () => {
  await gateway.close();
});

describe('sendReliably', () => {
  it('sends a message again after a retryable error, and gives it up after one a client must not retry', async () => {
    const client = await TestClient.connect(gateway.url);
    try {
      const flaky = await sendReliably(client, { sessionId: 1, clientMsgId: 'f', content: 'flaky' }, { attemptTimeoutMs: 1_000 });
      expect(flaky).toMatchObject({ attempts: 2, ack: { type: 'message_ack', client_msg_id: 'f' } });

      await expect(
        sendReliably(client, { sessionId: 1, clientMsgId: 'b', content: 'broken' }, { attemptTimeoutMs: 1_000 }),
      ).rejects.toThrow('message b refused with internal: internal for the test');
      expect(attempts.get('b')).toBe(1);
    } finally {
      client.ws.terminate();
    }
  });
});
