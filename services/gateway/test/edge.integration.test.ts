import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  lockWaits,
  rawWsClient,
  type ServiceProcess,
  type Stack,
  startStack,
  TestClient,
  TestClients,
  waitFor,
} from '@switchboard/testing';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';

let stack: Stack;
let strict: ServiceProcess;
let token: string;
let sessionId: number;
const clients = new TestClients();

const strictUrl = () => `ws://127.0.0.1:${strict.port}/`;

const authed = (url = stack.wsUrl(0)) => clients.authenticated(url, token);

async function stillWorks(client: TestClient): Promise<void> {
  expect(await client.request({ type: 'ping' })).toMatchObject({ type: 'pong', server_time: expect.any(String) });
}

beforeAll(async () => {
  stack = await startStack({ gateways: 1, env: { AUTH_API_KEYS: randomBytes(16).toString('hex'), SESSION_CREATE_LIMIT: '3' } });
  strict = await stack.startGateway({
    RATE_LIMIT_PER_SEC: '2',
    AUTH_TIMEOUT_MS: '300',
    ALLOWED_ORIGINS: 'https://chat.example.com, https://support.example.com',
  });
  const customer = await stack.user('user');
  token = customer.token;
  const client = await authed();
  sessionId = ((await client.request({ type: 'create_session' })).session as { id: number }).id;
});

// Every client here is the same customer, and a gateway takes at most MAX_CONNECTIONS_PER_USER of them.
afterEach(() => clients.closeAll());

afterAll(async () => {
  await clients.closeAll();
  await stack?.stop();
});

describe('authentication', () => {
  it('answers frames before auth with auth_required and keeps the socket open', async () => {
    const client = await clients.connect(stack.wsUrl(0));
    expect(await client.request({ type: 'join_session', session_id: sessionId })).toMatchObject({ type: 'error', code: 'auth_required' });
    await stillWorks(client);
    expect((await client.request({ type: 'auth', token })).type).toBe('auth_success');
  });

  it('refuses a wrong token with auth_failed and close 4001', async () => {
    const client = await clients.connect(stack.wsUrl(0));
    expect(await client.request({ type: 'auth', token: `${token.slice(0, -4)}AAAA` })).toMatchObject({
      type: 'error',
      code: 'auth_failed',
    });
    expect(await client.closed).toBe(4001);
  });

  it('closes a socket that does not authenticate in time with 4001', async () => {
    const client = await clients.connect(strictUrl());
    expect(await client.closed).toBe(4001);
    expect(client.frames.at(-1)).toMatchObject({ type: 'error', code: 'auth_required' });
  });
});

describe('before authentication', () => {
  it('closes with 1009 a socket that sends more than MAX_FRAME_BYTES, without waiting for the rest of its frame', async () => {
    const raw = await rawWsClient(stack.gateways[0]?.port ?? 0);
    // A frame announcing 900 KB, within what ws takes after auth (16 × MAX_FRAME_BYTES), of which
    // 100 KB come. Before, the gateway held them and waited for the rest until the auth timeout.
    raw.sendTextStart(900_000, Buffer.alloc(100_000, 0x20));
    expect(await raw.closeFrame).toBe(1009);
    expect(raw.frames.at(-1)).toMatchObject({
      type: 'error',
      code: 'payload_too_large',
      message: expect.stringContaining('before authenticating'),
    });
    raw.socket.destroy();
  });

  it('takes the auth frame and the frames sent right behind it, and no limit applies after', async () => {
    const client = await clients.connect(stack.wsUrl(0));
    client.send(JSON.stringify({ type: 'auth', token, req_id: 'a' }));
    client.send(JSON.stringify({ type: 'ping', req_id: 'p', pad: 'x'.repeat(30_000) }));
    client.send(JSON.stringify({ type: 'join_session', session_id: sessionId, req_id: 'j' }));
    expect(await client.waitFor((frame) => frame.req_id === 'j')).toMatchObject({ type: 'joined_session' });
    expect(client.frames.find((frame) => frame.req_id === 'p')).toMatchObject({ type: 'pong' });
    // Authenticated, it may send any amount: an oversize frame is refused, and the socket stays.
    for (let index = 0; index < 3; index++) client.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(70_000) }));
    await client.waitFor((frame) => frame.type === 'error' && frame.code === 'payload_too_large');
    await stillWorks(client);
  });
});

describe('after the gateway closes a socket', () => {
  it('handles no more of its frames, although a client ignoring the close frame keeps sending', async () => {
    const raw = await rawWsClient(strict.port);
    // The strict gateway closes a socket that has not authenticated within 300 ms.
    expect(await raw.closeFrame).toBe(4001);
    raw.sendText(JSON.stringify({ type: 'auth', token }));
    raw.sendText(JSON.stringify({ type: 'send_message', session_id: sessionId, content: 'sent after the close', client_msg_id: 'late-1' }));
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    raw.socket.destroy();

    const reader = await authed();
    const history = await reader.request({ type: 'history', session_id: sessionId, limit: 100 });
    expect((history.messages as { content: string }[]).map((message) => message.content)).not.toContain('sent after the close');
  });
});

describe('re-auth', () => {
  it('closes with 4001 a socket whose user got another role from its backend, so that it joins again under that role', async () => {
    const apiKey = stack.env.AUTH_API_KEYS ?? '';
    const serviceToken = async (role: string) => {
      const response = await fetch(`http://127.0.0.1:${stack.auth.port}/v1/service-token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
        body: JSON.stringify({ external_id: 'crm-4711', role }),
      });
      expect(response.status).toBe(200);
      return ((await response.json()) as { access_token: string }).access_token;
    };
    const asAgent = await serviceToken('agent');
    const client = await clients.authenticated(stack.wsUrl(0), asAgent);
    // As an agent it may join a customer's session.
    expect((await client.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');

    // The same user, now a customer: the socket must not keep the agent's membership. The new
    // role revokes the agent's tokens, and the socket is closed (a renewal in another role, on a
    // gateway that has not heard of it, is refused too: connection.test.ts).
    const asCustomer = await serviceToken('user');
    expect(await client.closed).toBe(4001);
    expect(client.frames.at(-1)).toMatchObject({ type: 'error', code: 'auth_failed', message: 'token revoked; sign in again' });

    const again = await clients.authenticated(stack.wsUrl(0), asCustomer);
    expect(await again.request({ type: 'join_session', session_id: sessionId })).toMatchObject({ type: 'error', code: 'forbidden' });
  });

  it('keeps the socket and its sessions when the new token has the same role', async () => {
    const client = await authed();
    expect((await client.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');
    const fresh = await stack.user('user');
    expect(await client.request({ type: 'auth', token: fresh.token })).toMatchObject({ type: 'error', code: 'forbidden' });
    expect((await client.request({ type: 'auth', token })).type).toBe('auth_success');
    await stillWorks(client);
  });
});

describe('bad frames', () => {
  it.each([
    ['text that is not JSON', 'hello there', 'invalid_message'],
    ['a JSON array', '[1,2,3]', 'invalid_message'],
    ['a JSON string', '"auth"', 'invalid_message'],
    ['an object without type', '{"session_id":1}', 'invalid_message'],
    ['a non-string type', '{"type":42}', 'invalid_message'],
    ['an unknown type', '{"type":"subscribe","req_id":"u1"}', 'unknown_type'],
    ['a missing field', '{"type":"join_session","req_id":7}', 'invalid_message'],
    ['a wrong field type', '{"type":"join_session","session_id":"one"}', 'invalid_message'],
    ['a negative id', '{"type":"history","session_id":-3}', 'invalid_message'],
    ['empty content', '{"type":"send_message","session_id":1,"content":"   "}', 'invalid_message'],
  ])('answers %s with %s and keeps working', async (_label, text, code) => {
    const client = await authed();
    client.send(text);
    const error = await client.waitFor((frame) => frame.type === 'error');
    expect(error.code).toBe(code);
    expect(error.message).toEqual(expect.any(String));
    const parsed = (() => {
      try {
        return JSON.parse(text) as { req_id?: unknown };
      } catch {
        return {};
      }
    })();
    if (typeof parsed === 'object' && parsed !== null && 'req_id' in parsed) expect(error.req_id).toBe(parsed.req_id);
    await stillWorks(client);
  });

  it('answers content over MAX_CONTENT_CHARS with payload_too_large', async () => {
    const client = await authed();
    const reply = await client.request({
      type: 'send_message',
      session_id: sessionId,
      content: 'x'.repeat(4001),
      client_msg_id: 'too-long',
    });
    expect(reply).toMatchObject({ type: 'error', code: 'payload_too_large', client_msg_id: 'too-long' });
    // 4000 characters, each an emoji of two UTF-16 units, is within the limit.
    expect((await client.request({ type: 'send_message', session_id: sessionId, content: '😀'.repeat(4000) })).type).toBe('message_ack');
  });

  it('answers a frame over MAX_FRAME_BYTES with payload_too_large and keeps working', async () => {
    const client = await authed();
    client.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(70_000) }));
    expect(await client.waitFor((frame) => frame.type === 'error')).toMatchObject({ code: 'payload_too_large' });
    await stillWorks(client);
  });

  it('echoes the req_id and client_msg_id of a send over MAX_FRAME_BYTES, so the client can stop waiting for it', async () => {
    const client = await authed();
    client.send(
      JSON.stringify({
        type: 'send_message',
        session_id: sessionId,
        content: 'x'.repeat(70_000),
        client_msg_id: 'too-big-1',
        req_id: 'big',
      }),
    );
    expect(await client.waitFor((frame) => frame.type === 'error')).toMatchObject({
      code: 'payload_too_large',
      req_id: 'big',
      client_msg_id: 'too-big-1',
    });
    await stillWorks(client);
  });

  it('closes with 1009 a frame far over the limit', async () => {
    const client = await authed();
    client.send('x'.repeat(16 * 65_536 + 1));
    expect(await client.closed).toBe(1009);
  });

  it('refuses binary frames with invalid_message', async () => {
    const client = await authed();
    client.send(Buffer.from([1, 2, 3]));
    expect(await client.waitFor((frame) => frame.type === 'error')).toMatchObject({ code: 'invalid_message' });
    await stillWorks(client);
  });

  it('closes with 1007 a text frame that is not UTF-8, as RFC 6455 requires, and no other socket', async () => {
    const client = await authed();
    const other = await authed();
    // `ws` sends a Buffer as text as it is, unchecked: 0xFF is never UTF-8.
    client.ws.send(Buffer.from([0x7b, 0xff, 0x7d]), { binary: false });
    expect(await client.closed).toBe(1007);
    expect(client.frames.some((frame) => frame.type === 'error')).toBe(false);
    await stillWorks(other);
  });

  it('refuses content with a NUL character and stores other control characters verbatim', async () => {
    const client = await authed();
    expect(await client.request({ type: 'send_message', session_id: sessionId, content: 'a\u0000b' })).toMatchObject({
      type: 'error',
      code: 'invalid_message',
    });
    const tricky = `'; drop table messages; -- <script>alert(1)</script> \u0001\u001b[31m\t\r\n`;
    expect((await client.request({ type: 'send_message', session_id: sessionId, content: tricky })).type).toBe('message_ack');
    const history = await client.request({ type: 'history', session_id: sessionId, limit: 1 });
    expect((history.messages as { content: string }[])[0]?.content).toBe(tricky);
  });

  it('keeps other clients unaffected by one sending garbage', async () => {
    const noisy = await authed();
    const calm = await authed();
    for (let i = 0; i < 20; i++) noisy.send('{{{{');
    await stillWorks(calm);
    await stillWorks(noisy);
  });
});

describe('rate limiting', () => {
  it('answers frames over the rate with rate_limited, echoing req_id and client_msg_id, then recovers', async () => {
    // A gateway of its own at 2 frames a second, with the default time to authenticate: the
    // strict gateway's 300 ms may pass before its first token check (keys fetched from auth) ends.
    const limitedGateway = await stack.startGateway({ RATE_LIMIT_PER_SEC: '2' });
    const client = await authed(`ws://127.0.0.1:${limitedGateway.port}/`);
    for (let i = 0; i < 8; i++) client.send({ type: 'ping', req_id: `p${i}` });
    client.send({ type: 'send_message', session_id: sessionId, content: 'over the limit', client_msg_id: 'limited-1', req_id: 'send' });
    const limited = await client.waitFor((frame) => frame.req_id === 'send');
    expect(limited).toMatchObject({ type: 'error', code: 'rate_limited', client_msg_id: 'limited-1' });
    // At 2 frames a second, the next token is at most 500 ms away.
    expect(limited.retry_after_ms).toBeGreaterThan(0);
    expect(limited.retry_after_ms).toBeLessThanOrEqual(500);
    const replies = await client.waitForCount((frame) => typeof frame.req_id === 'string' && frame.req_id.startsWith('p'), 8);
    expect(replies.filter((frame) => frame.type === 'pong').length).toBeGreaterThanOrEqual(3);
    expect(replies.filter((frame) => frame.code === 'rate_limited').length).toBeGreaterThanOrEqual(1);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await stillWorks(client);
  });
});

describe('pings', () => {
  it('answers a client ping with a pong, within the rate like any frame, and closes a ping flood with 1008', async () => {
    const gateway = stack.gateways[0];
    if (!gateway) throw new Error('no gateway');
    const polite = await rawWsClient(gateway.port);
    polite.sendPing(Buffer.from('hi'));
    await waitFor(() => polite.pongs === 1, 5_000, 'the pong');

    // Before, ws answered every ping itself, each with a write of its own, none counted: no close.
    const flood = await rawWsClient(gateway.port);
    for (let burst = 0; burst < 20; burst++) {
      for (let i = 0; i < 25; i++) flood.sendPing();
      await new Promise((resolve) => setImmediate(resolve));
    }
    const noClose = new Promise<string>((resolve) => setTimeout(() => resolve('no close after 10 s'), 10_000));
    expect(await Promise.race([flood.closeFrame, noClose])).toBe(1008);
    expect(flood.pongs).toBeLessThanOrEqual(60);
    polite.socket.destroy();
    flood.socket.destroy();
  });
});

describe('new sessions', () => {
  it('refuses a customer over SESSION_CREATE_LIMIT with rate_limited, and no other customer', async () => {
    const creator = await clients.authenticated(stack.wsUrl(0), (await stack.user('user')).token);
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push(await creator.request({ type: 'create_session', subject: `topic ${i}` }));
    expect(replies.map((reply) => reply.type)).toEqual(['session_created', 'session_created', 'session_created', 'error']);
    expect(replies[3]).toMatchObject({ code: 'rate_limited', message: expect.stringMatching(/at most 3 new sessions per 60 minutes/) });
    // Until the first of the three leaves the hour's window: nearly an hour, never more.
    expect(replies[3]?.retry_after_ms).toBeGreaterThan(59 * 60_000);
    expect(replies[3]?.retry_after_ms).toBeLessThanOrEqual(60 * 60_000);
    await stillWorks(creator);
    const other = await clients.authenticated(stack.wsUrl(0), (await stack.user('user')).token);
    expect((await other.request({ type: 'create_session' })).type).toBe('session_created');
  });
});

describe('a client that does not wait for replies', () => {
  it('gets rate_limited for frames beyond 100 waiting behind a slow one, and its socket keeps working', async () => {
    const fast = await stack.startGateway({ RATE_LIMIT_PER_SEC: '100000' });
    const client = await authed(`ws://127.0.0.1:${fast.port}/ws`);
    // A lock on the sessions table holds up list_sessions; every frame after it waits its turn.
    const locker = new pg.Client({ connectionString: stack.database.url });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table sessions in access exclusive mode');
      client.send({ type: 'list_sessions', req_id: 'slow' });
      // Its query waits for the lock: it is being handled, no longer among the frames waiting.
      // Sent at once, the pings could be read before its handling began, and one more refused.
      await waitFor(async () => (await lockWaits(stack.database.url)) > 0, 10_000, 'the list to wait for the lock');
      for (let i = 0; i < 150; i++) client.send({ type: 'ping', req_id: `p${i}` });
      const refusals = await client.waitForCount((frame) => frame.type === 'error' && frame.code === 'rate_limited', 50);
      expect(refusals.map((frame) => frame.req_id)).toEqual(Array.from({ length: 50 }, (_, i) => `p${i + 100}`));
      expect(client.frames.some((frame) => frame.type === 'pong' || frame.req_id === 'slow')).toBe(false);
    } finally {
      await locker.query('rollback');
      await locker.end();
    }
    expect((await client.waitFor((frame) => frame.req_id === 'slow')).type).toBe('sessions');
    const pongs = await client.waitForCount((frame) => frame.type === 'pong', 100);
    expect(pongs.map((frame) => frame.req_id)).toEqual(Array.from({ length: 100 }, (_, i) => `p${i}`));
    await stillWorks(client);
  });
});

describe('a frame over 1 MiB within MAX_FRAME_BYTES', () => {
  it('takes a frame over 1 MiB within MAX_FRAME_BYTES on a socket with none waiting', async () => {
    const large = await stack.startGateway({ MAX_FRAME_BYTES: String(2 * 1024 * 1024) });
    const client = await authed(`ws://127.0.0.1:${large.port}/ws`);
    // Before, it was refused with rate_limited every time, as if over the 1 MiB of frames waiting.
    expect(await client.request({ type: 'ping', pad: 'x'.repeat(1_500_000) })).toMatchObject({ type: 'pong' });
  });
});

describe('heartbeats', () => {
  it('pings sockets and drops one that stops answering', async () => {
    // 1 s: a socket is dropped after two pings without a pong, which a stall of the answering
    // client's test process must not look like.
    const gateway = await stack.startGateway({ HEARTBEAT_INTERVAL_MS: '1000' });
    const url = `ws://127.0.0.1:${gateway.port}/`;
    const answering = await clients.connect(url);
    expect(answering.frames[0]).toMatchObject({ type: 'connected', heartbeat_interval_ms: 1000 });
    const silent = new WebSocket(url, { autoPong: false });
    let pings = 0;
    silent.on('ping', () => pings++);
    const closed = new Promise<number>((resolve) => silent.on('close', (code) => resolve(code)));
    expect(await closed).toBe(1006);
    expect(pings).toBeGreaterThanOrEqual(1);
    // The socket that answers its pings is still there.
    await stillWorks(answering);
  });

  it('keeps sockets that answer their pings when the wall clock is stepped forward', async () => {
    // NTP correcting a clock a minute behind: the heartbeat measures on the monotonic clock.
    const gateway = await stack.startGateway({
      HEARTBEAT_INTERVAL_MS: '500',
      NODE_OPTIONS: `--import ${fileURLToPath(new URL('./fixtures/wall-clock-step.mjs', import.meta.url))}`,
      WALL_CLOCK_STEP_MS: '60000',
      WALL_CLOCK_STEP_AFTER_MS: '1000',
    });
    const answering = await clients.authenticated(`ws://127.0.0.1:${gateway.port}/`, token);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(answering.closeCode).toBeUndefined();
    await stillWorks(answering);
  });

  it('spreads its pings over the interval instead of pinging every socket at once', async () => {
    // 2,000 ms in slices of about 500 ms: four slices, the sockets dealt to them in turn.
    const gateway = await stack.startGateway({ HEARTBEAT_INTERVAL_MS: '2000' });
    const url = `ws://127.0.0.1:${gateway.port}/`;
    const pings: number[][] = [];
    const sockets: WebSocket[] = [];
    for (let index = 0; index < 8; index++) {
      const socket = new WebSocket(url);
      const times: number[] = [];
      socket.on('ping', () => times.push(performance.now()));
      await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
      pings.push(times);
      sockets.push(socket);
    }
    try {
      await waitFor(() => pings.every((times) => times.length >= 2), 10_000, 'two pings on every socket');
      // Every socket is pinged about once per interval…
      for (const times of pings) {
        expect(times.length).toBeGreaterThanOrEqual(2);
        const [first = 0, second = 0] = times;
        expect(second - first).toBeGreaterThan(1_000);
        expect(second - first).toBeLessThan(3_000);
      }
      // …but not all at the same moment: their first pings fall on several ticks, 500 ms apart.
      const firsts = pings.map(([first = 0]) => first).sort((a, b) => a - b);
      const ticks = firsts.filter((time, index) => index === 0 || time - (firsts[index - 1] ?? 0) > 250).length;
      expect(ticks).toBeGreaterThanOrEqual(3);
    } finally {
      for (const socket of sockets) socket.terminate();
    }
  });
});

describe('the upgrade', () => {
  it('refuses an Origin outside ALLOWED_ORIGINS with 403', async () => {
    await expect(TestClient.connect(strictUrl(), { origin: 'https://evil.example' })).rejects.toThrow(/403/);
  });

  it('accepts an allowed Origin, and clients that send none', async () => {
    const browser = await clients.connect(strictUrl(), { origin: 'https://support.example.com' });
    const server = await clients.connect(strictUrl());
    expect(browser.frames[0]?.type).toBe('connected');
    expect(server.frames[0]?.type).toBe('connected');
  });

  it('closes the socket of a refused upgrade once answered, whatever the client does after', async () => {
    const socket = connect({ port: stack.gateways[0]?.port ?? 0, host: '127.0.0.1', allowHalfOpen: true });
    await once(socket, 'connect');
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('utf8');
    });
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    const key = randomBytes(16).toString('base64');
    socket.write(
      `GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    await once(socket, 'end');
    expect(answer).toMatch(/^HTTP\/1\.1 404/);
    // The client keeps its side open and writes on. Before, the gateway's side stayed open too, a
    // descriptor held for as long as the client liked; now the writes meet a closed socket.
    const writing = setInterval(() => socket.write('x'), 50);
    const stillOpen = new Promise<string>((resolve) => setTimeout(() => resolve('still open after 5 s'), 5_000));
    expect(await Promise.race([closed.then(() => 'closed'), stillOpen])).toBe('closed');
    clearInterval(writing);
    socket.destroy();
  });

  it('accepts / and /ws and refuses other paths with 404', async () => {
    await clients.connect(`ws://127.0.0.1:${stack.gateways[0]?.port}/`);
    await clients.connect(`ws://127.0.0.1:${stack.gateways[0]?.port}/ws`);
    await expect(TestClient.connect(`ws://127.0.0.1:${stack.gateways[0]?.port}/chat`)).rejects.toThrow(/404/);
  });
});
