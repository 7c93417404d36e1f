import type { Frame, TestClient } from './ws-client.js';

export interface ReliableSendOptions {
  /** How long one attempt waits for its ack before the message is sent again. */
  attemptTimeoutMs?: number;
  /** Gives up after this long in all. */
  deadlineMs?: number;
}

/**
 * The error codes after which a careful client sends the same message again (docs/protocol.md,
 * "Errors"); after any other (`internal`, `forbidden`, `invalid_message`, …) it has failed.
 */
export const RETRYABLE_SEND_ERRORS: ReadonlySet<string> = new Set(['unavailable', 'rate_limited']);

/**
 * Sends a message the way a careful client does: until a `message_ack` for its `client_msg_id`
 * arrives, every retryable error for it and every silent attempt is followed by a resend with the
 * same id. Resolves with the ack and the number of attempts; rejects on an error a client must
 * not retry, as a real one would give the message up then.
 */
export async function sendReliably(
  client: TestClient,
  message: { sessionId: number; clientMsgId: string; content: string },
  { attemptTimeoutMs = 4_000, deadlineMs = 60_000 }: ReliableSendOptions = {},
): Promise<{ ack: Frame; attempts: number }> {
  const deadline = Date.now() + deadlineMs;
  const isAck = (frame: Frame) => frame.type === 'message_ack' && frame.client_msg_id === message.clientMsgId;
  for (let attempts = 1; ; attempts++) {
    const seen = client.frames.length;
    client.send({ type: 'send_message', session_id: message.sessionId, content: message.content, client_msg_id: message.clientMsgId });
    const outcome = await client
      .waitFor(
        (frame) =>
          isAck(frame) || (frame.type === 'error' && frame.client_msg_id === message.clientMsgId && client.frames.indexOf(frame) >= seen),
        attemptTimeoutMs,
      )
      .catch(() => undefined);
    if (outcome && isAck(outcome)) return { ack: outcome, attempts };
    if (outcome && !RETRYABLE_SEND_ERRORS.has(String(outcome.code)))
      throw new Error(`message ${message.clientMsgId} refused with ${String(outcome.code)}: ${String(outcome.message)}`);
    if (Date.now() > deadline) throw new Error(`message ${message.clientMsgId} not acked after ${attempts} attempts`);
    if (outcome) await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
