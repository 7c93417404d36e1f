import { headers } from 'nats';
import { describe, expect, it } from 'vitest';
import { inboundMessageId, inboundMessageSchema, MAX_PAYLOAD_HEADROOM_BYTES, SESSION_HEADS_MAX, sessionHeadsPerRequest } from './bus.js';

describe('inboundMessageId', () => {
  it('keeps a printable ASCII id as it is', () => {
    expect(inboundMessageId(7, 'c-42_x.y~!')).toBe('7:c-42_x.y~!');
  });

  it('gives every id a key that a NATS header holds unchanged', () => {
    for (const id of ['a\nb', 'a\r\nb', ' x ', 'x ', '\tx', 'é', '😀', '\ud800', '50%', 'a b']) {
      const key = inboundMessageId(1, id);
      const h = headers();
      h.set('Nats-Msg-Id', key);
      expect(h.get('Nats-Msg-Id')).toBe(key);
    }
  });

  it('gives different ids different keys, escaped or not', () => {
    const ids = ['x', 'x ', ' x', 'a\nb', 'a%000ab', '%000a', '\n', 'a b', 'a%0020b', '%', '%0025', 'é', '\u00e9\u0301'];
    const keys = ids.map((id) => inboundMessageId(3, id));
    expect(new Set(keys).size).toBe(ids.length);
  });

  it('keeps sessions apart', () => {
    expect(inboundMessageId(1, '2:x')).not.toBe(inboundMessageId(12, 'x'));
  });

  it("fits, with the headers' framing, in the headroom kept under max_payload at its longest", () => {
    // 128 characters outside the BMP (the schema counts code points), each two escaped units.
    const key = inboundMessageId(Number.MAX_SAFE_INTEGER, '😀'.repeat(128));
    // The header block as nats.js writes it.
    const bytes = Buffer.byteLength(`NATS/1.0\r\nNats-Msg-Id: ${key}\r\n\r\n`);
    // Before, 1,024 bytes: nats.js counts headers against max_payload, and such a send was refused
    // as unavailable on every retry instead of payload_too_large.
    expect(bytes).toBeGreaterThan(1_024);
    expect(bytes + 100).toBeLessThanOrEqual(MAX_PAYLOAD_HEADROOM_BYTES);
  });
});

describe('sessionHeadsPerRequest', () => {
  const largestReply = (count: number) =>
    JSON.stringify({ heads: Array.from({ length: count }, () => ({ id: Number.MAX_SAFE_INTEGER, last_seq: Number.MAX_SAFE_INTEGER })) });

  it('asks about SESSION_HEADS_MAX sessions at once under NATS defaults', () => {
    expect(sessionHeadsPerRequest(1024 * 1024)).toBe(SESSION_HEADS_MAX);
  });

  it('asks about fewer under a smaller max_payload, so that the largest reply fits', () => {
    for (const maxPayload of [8 * 1024, 64 * 1024, 200 * 1024]) {
      const count = sessionHeadsPerRequest(maxPayload);
      expect(count).toBeLessThan(SESSION_HEADS_MAX);
      expect(largestReply(count).length).toBeLessThanOrEqual(maxPayload);
      expect(largestReply(count + 30).length).toBeGreaterThan(maxPayload - 1_024);
    }
    expect(sessionHeadsPerRequest(512)).toBe(1);
  });
});

describe('inboundMessageSchema', () => {
  const message = {
    session_id: 1,
    client_msg_id: 'c-1',
    sender_id: 2,
    sender_role: 'user',
    content: 'hello',
    received_at: '2026-01-01T00:00:00.000Z',
  };

  it('refuses text PostgreSQL would store otherwise than sent', () => {
    expect(inboundMessageSchema.safeParse(message).success).toBe(true);
    expect(inboundMessageSchema.safeParse({ ...message, client_msg_id: 'c-\ud800' }).success).toBe(false);
    expect(inboundMessageSchema.safeParse({ ...message, content: 'nul \u0000' }).success).toBe(false);
    // A surrogate pair is one well-formed character.
    expect(inboundMessageSchema.safeParse({ ...message, content: 'emoji \ud83d\ude00' }).success).toBe(true);
  });
});
