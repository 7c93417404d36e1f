import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDelivery } from './checker.js';
import { LoadClient } from './load-client.js';
import { startStandInGateway } from './stand-in-gateway.js';

/**
 * A stand-in gateway that breaks the protocol's order: it sends a live message (seq 3) before it
 * answers the join with `last_seq: 1`, and seq 2 never comes; it also sends a message of a
 * session the client never joined. The load client must let the checker see the breach, the loss
 * below it and the stray message.
 */
let gateway: Awaited<ReturnType<typeof startStandInGateway>>;

beforeAll(async () => {
  gateway = await startStandInGateway((socket, frame) => {
    if (frame.type === 'auth') socket.send(JSON.stringify({ type: 'auth_success', req_id: frame.req_id }));
    if (frame.type === 'join_session') {
      const message = { id: 13, session_id: frame.session_id, seq: 3, client_msg_id: 'x-3', content: 'late', sender_id: 1 };
      socket.send(JSON.stringify({ type: 'new_message', message }));
      socket.send(JSON.stringify({ type: 'new_message', message: { ...message, session_id: 99, seq: 1 } }));
      socket.send(JSON.stringify({ type: 'joined_session', session_id: frame.session_id, last_seq: 1, req_id: frame.req_id }));
    }
  });
});

afterAll(async () => {
  await gateway.close();
});

describe('LoadClient', () => {
  it("starts a member's expectations at its first join's last_seq, and records messages that came before the join or for another session", async () => {
    const client = new LoadClient({ name: 'm', urls: [gateway.url], token: 't', join: [5] });
    try {
      await client.start(5_000);
      const { transcripts, strays } = client.records();
      expect(transcripts).toEqual([
        { member: 'm', sessionId: 5, afterSeq: 1, beforeJoin: 1, messages: [{ seq: 3, clientMsgId: 'x-3', messageId: 13 }] },
      ]);
      expect(strays).toEqual([{ member: 'm', sessionId: 99, seq: 1 }]);
      expect(client.cursor(5)).toBe(3);

      const stored = [1, 2, 3].map((seq) => ({ sessionId: 5, seq, clientMsgId: `x-${seq}`, senderId: 1, messageId: 10 + seq }));
      const attempts = stored.map((row) => ({ sessionId: 5, clientMsgId: row.clientMsgId, sender: 'x', order: row.seq }));
      const report = checkDelivery({ attempts, acks: [], transcripts, strays, stored });
      expect(report.counts).toMatchObject({ outOfOrder: 1, gaps: 1, unexpected: 1 });
      expect(report.problems.join('\n')).toMatch(/before its joined_session[\s\S]*never received seq 2[\s\S]*never joined/);
    } finally {
      await client.close();
    }
  });
});
