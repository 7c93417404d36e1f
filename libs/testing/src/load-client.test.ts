import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDelivery } from './checker.js';
import { LoadClient } from './load-client.js';
import { startStandInGateway } from './stand-in-gateway.js';

/**
 * A stand-in gateway that breaks the protocol's order: it sends a live message (seq 3) before it
 * answers the join with `last_seq: 1`, and seq 2 never comes. The load client must let the
 * checker see both the breach and the loss below it.
 */
let gateway: Awaited<ReturnType<typeof startStandInGateway>>;

beforeAll(async () => {
  gateway = await startStandInGateway((socket, frame) => {
    if (frame.type === 'auth') socket.send(JSON.stringify({ type: 'auth_success', req_id: frame.req_id }));
    if (frame.type === 'join_session') {
      const message = { id: 13, session_id: frame.session_id, seq: 3, client_msg_id: 'x-3', content: 'late', sender_id: 1 };
      socket.send(JSON.stringify({ type: 'new_message', message }));
      socket.send(JSON.stringify({ type: 'joined_session', session_id: frame.session_id, last_seq: 1, req_id: frame.req_id }));
    }
  });
});

afterAll(async () => {
  await gateway.close();
});

describe('LoadClient', () => {
  it("starts a member's expectations at its first join's last_seq, and records messages that came before the join", async () => {
    const client = new LoadClient({ name: 'm', urls: [gateway.url], token: 't', join: [5] });
    try {
      await client.start(5_000);
      const { transcripts } = client.records();
      expect(transcripts).toEqual([
        { member: 'm', sessionId: 5, afterSeq: 1, beforeJoin: 1, messages: [{ seq: 3, clientMsgId: 'x-3', messageId: 13 }] },
      ]);
      expect(client.cursor(5)).toBe(3);

      const stored = [1, 2, 3].map((seq) => ({ sessionId: 5, seq, clientMsgId: `x-${seq}`, senderId: 1, messageId: 10 + seq }));
      const report = checkDelivery({ attempts: [], acks: [], transcripts, stored });
      expect(report.counts).toMatchObject({ outOfOrder: 1, gaps: 1 });
      expect(report.problems.join('\n')).toMatch(/before its joined_session[\s\S]*never received seq 2/);
    } finally {
      await client.close();
    }
  });
});
