import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NatsServer, query, type Stack, startStack, TestClients } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * A NATS server that takes smaller messages than the gateway's frames may carry. A message whose
 * inbound payload just fitted was taken into the stream and stored, and then NATS refused its
 * confirmed event (larger by the id, the seq and a wrapper), and the reply of every gap fill that
 * would carry it: it was never delivered, and the session's later messages waited behind it.
 */

const MAX_PAYLOAD = 8 * 1024;

let nats: NatsServer;
let stack: Stack;
const clients = new TestClients();

beforeAll(async () => {
  const storeDir = await mkdtemp(join(tmpdir(), 'gateway-max-payload-'));
  const configFile = join(storeDir, 'nats.conf');
  await writeFile(configFile, `max_payload: ${MAX_PAYLOAD}\n`);
  nats = await NatsServer.start(storeDir, ['-c', configFile]);
  stack = await startStack({
    gateways: 1,
    env: { NATS_URL: nats.url },
    gatewayEnv: { MAX_CONTENT_CHARS: '20000', SEND_TIMEOUT_MS: '3000' },
  });
}, 60_000);

afterAll(async () => {
  await clients.closeAll();
  await stack?.stop();
  await nats?.remove();
});

describe("a message over the NATS server's max_payload", () => {
  it('is refused with payload_too_large before anything is stored, and the session goes on', async () => {
    const customer = await clients.authenticated(stack.wsUrl(0), (await stack.user('user')).token);
    const created = await customer.request({ type: 'create_session', subject: 'limits' });
    const sessionId = (created.session as { id: number }).id;
    const agent = await clients.authenticated(stack.wsUrl(0), (await stack.user('agent')).token);
    expect((await agent.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');
    expect((await customer.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');

    // Its inbound JSON (about 7,950 bytes) fits in 8 KiB, but not with the room kept for headers and
    // for what its confirmed event adds: its event would have been refused after it was stored.
    const refused = await customer.request(
      { type: 'send_message', session_id: sessionId, content: 'x'.repeat(7_800), client_msg_id: 'large' },
      10_000,
    );
    expect(refused).toMatchObject({ type: 'error', code: 'payload_too_large', client_msg_id: 'large' });
    expect(refused.message).toMatch(/over what the message broker takes \(6656 bytes/);

    const ack = await customer.request({ type: 'send_message', session_id: sessionId, content: 'after', client_msg_id: 'after' }, 10_000);
    expect(ack).toMatchObject({ type: 'message_ack', client_msg_id: 'after', seq: 1 });
    const delivered = await agent.waitFor((frame) => frame.type === 'new_message', 5_000);
    expect(delivered.message).toMatchObject({ seq: 1, content: 'after' });
    const stored = await query<{ seq: number; client_msg_id: string }>(
      stack.database.url,
      'select seq::int as seq, client_msg_id from messages where session_id = $1 order by seq',
      [sessionId],
    );
    expect(stored).toEqual([{ seq: 1, client_msg_id: 'after' }]);
  }, 60_000);
});
