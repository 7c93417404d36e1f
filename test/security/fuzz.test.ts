/**
 * Random frames at a gateway, from a seeded generator: every client frame type, and unknown ones,
 * with hostile values in any field (numbers JSON cannot round-trip, control characters, lone
 * surrogates, prototype keys, duplicate keys, deep nesting, oversize text), raw text and binary
 * frames. Whatever arrives, the gateway answers each frame that carries a readable `req_id` with a
 * reply carrying it, never with `internal`, closes the socket only after a refused `auth`, stays
 * up, and a bystander in the same session receives every acknowledged message once, in order.
 *
 * The seed is printed; `FUZZ_SEED=<n>` replays a run, `FUZZ_FRAMES=<n>` sends more frames.
 */
import { randomBytes } from 'node:crypto';
import { type Frame, type Stack, startStack, type TestClient, TestClients } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SEED = Number(process.env.FUZZ_SEED ?? randomBytes(4).readUInt32LE(0));
const FRAMES = Number(process.env.FUZZ_FRAMES ?? 1_500);
const BATCH = 50;
/** Error codes a reply may carry; `internal` (a bug) and `unavailable` (nothing is down here) are not among them. */
const EXPECTED_CODES = new Set([
  'auth_required',
  'auth_failed',
  'invalid_message',
  'unknown_type',
  'forbidden',
  'not_found',
  'payload_too_large',
]);

/** mulberry32: small, fast and good enough to pick test cases; the same seed gives the same run. */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const below = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[below(items.length)] as T;
  return { next, below, pick, chance: (p: number) => next() < p };
}
type Random = ReturnType<typeof generator>;

/** JSON texts, not values: some are numbers or shapes `JSON.stringify` cannot produce. */
const HOSTILE = [
  'null',
  'true',
  'false',
  '0',
  '-0',
  '-1',
  '1.5',
  '1e999',
  '-1e999',
  '1E400',
  '9007199254740993',
  '2147483648',
  '1e-400',
  '""',
  '" "',
  '"\\r\\n"',
  '"\\u0000"',
  '"a\\u0000b"',
  '"\\ud800"',
  '"\\udfff\\ud800"',
  '"\\u202e"',
  '"😀"',
  '"%00%0d%0a"',
  '"__proto__"',
  '"constructor"',
  '"toString"',
  `"${"'; drop table messages; --"}"`,
  '"1"',
  '"open"',
  '[]',
  '[1,2]',
  '{}',
  '{"__proto__":{"polluted":1}}',
  '{"valueOf":1,"toString":2}',
  `${'['.repeat(200)}${']'.repeat(200)}`,
  `${'{"a":'.repeat(100)}1${'}'.repeat(100)}`,
];
const LONG_TEXTS = [3_999, 4_000, 4_001, 10_000, 70_000];
/** `send_message` weighs four times as much: storing and delivering is what must not break. */
const TYPES = [
  'auth',
  'create_session',
  'join_session',
  'leave_session',
  'send_message',
  'send_message',
  'send_message',
  'send_message',
  'history',
  'list_sessions',
  'ping',
  'subscribe',
  '',
  'PING',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
];
const FIELDS: Record<string, string[]> = {
  auth: ['token'],
  create_session: ['subject'],
  join_session: ['session_id', 'last_seq'],
  leave_session: ['session_id'],
  send_message: ['session_id', 'content', 'client_msg_id'],
  history: ['session_id', 'before_seq', 'limit'],
  list_sessions: ['status', 'before_id', 'limit'],
};
const EXTRA_KEYS = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'type', 'session_id', 'x'];

/** One frame's text, and the req_id its reply must carry when it has a readable one. */
interface Case {
  text: string;
  reqId?: string;
  binary?: boolean;
}

function fuzzCase(random: Random, index: number, context: { sessionId: number; token: string }): Case {
  const roll = random.next();
  if (roll < 0.03) return { text: randomBytes(1 + random.below(64)).toString('base64'), binary: true };
  if (roll < 0.08) return { text: random.pick(HOSTILE) };
  if (roll < 0.1) return { text: `{"type":"ping","req_id":"f${index}"`.slice(0, 1 + random.below(28)) };

  const valid: Record<string, () => string> = {
    token: () => JSON.stringify(random.chance(0.5) ? context.token : `${context.token.slice(0, -3)}abc`),
    subject: () => JSON.stringify(`fuzz ${index}`),
    session_id: () => String(random.chance(0.8) ? context.sessionId : context.sessionId + 1 + random.below(1_000_000)),
    last_seq: () => String(random.below(5)),
    content: () => JSON.stringify(`fuzz ${index} ${'é'.repeat(random.below(20))}`),
    client_msg_id: () => JSON.stringify(`fuzz-${SEED}-${index}`),
    before_seq: () => String(1 + random.below(100)),
    limit: () => String(1 + random.below(200)),
    status: () => JSON.stringify(random.pick(['open', 'closed'])),
  };
  const type = random.pick(TYPES);
  const entries: [string, string][] = [['type', JSON.stringify(type)]];
  const reqId = `f${index}`;
  if (random.chance(0.9)) entries.push(['req_id', JSON.stringify(reqId)]);
  else entries.push(['req_id', random.pick(HOSTILE)]);
  for (const field of (Object.hasOwn(FIELDS, type) ? FIELDS[type] : undefined) ?? ['session_id']) {
    const choice = random.next();
    if (choice < 0.6) entries.push([field, (valid[field] ?? (() => '1'))()]);
    else if (choice < 0.85) entries.push([field, random.pick(HOSTILE)]);
    else if (choice < 0.9) entries.push([field, JSON.stringify('x'.repeat(random.pick(LONG_TEXTS)))]);
  }
  if (random.chance(0.15)) entries.push([random.pick(EXTRA_KEYS), random.pick(HOSTILE)]);
  // A repeated key: JSON.parse keeps the last, and so must every reader of the frame.
  if (random.chance(0.05)) entries.push(['req_id', JSON.stringify(reqId)]);
  if (random.chance(0.05)) entries.push(['type', JSON.stringify(random.pick(TYPES))]);
  const text = `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`;
  const parsed = (() => {
    try {
      return JSON.parse(text) as { req_id?: unknown };
    } catch {
      return {};
    }
  })();
  return { text, ...(parsed.req_id === reqId ? { reqId } : {}) };
}

let stack: Stack;
let customer: { token: string };
let sessionId: number;
let bystander: TestClient;
const clients = new TestClients();

beforeAll(async () => {
  // A rate limit no fuzzer reaches: what is fuzzed is the frames, not the limiter.
  stack = await startStack({ gateways: 1, gatewayEnv: { RATE_LIMIT_PER_SEC: '100000' } });
  customer = await stack.user('user');
  const agent = await stack.user('agent');
  const owner = await clients.authenticated(stack.wsUrl(0), customer.token);
  sessionId = ((await owner.request({ type: 'create_session', subject: 'fuzzed' })).session as { id: number }).id;
  bystander = await clients.authenticated(stack.wsUrl(0), agent.token);
  expect((await bystander.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');
});

afterAll(async () => {
  await clients.closeAll();
  await stack?.stop();
});

describe(`random frames (FUZZ_SEED=${SEED})`, () => {
  it('are each answered with a clear error or a reply, and lose or repeat nothing for others', { timeout: 240_000 }, async () => {
    const random = generator(SEED);
    const context = { sessionId, token: customer.token };
    const acked = new Map<string, number>();
    /** The well-formed sends of the batches no refused auth cut off. */
    const mustAck: string[] = [];
    const problems: string[] = [];
    let sent = 0;
    let reconnects = 0;

    const open = async () => {
      const client = await clients.authenticated(stack.wsUrl(0), customer.token);
      expect((await client.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');
      return client;
    };
    let fuzzer = await open();

    while (sent < FRAMES) {
      const batch: Case[] = [];
      for (let i = 0; i < BATCH && sent < FRAMES; i++) batch.push(fuzzCase(random, sent++, context));
      // One well-formed send among them, wherever the generator puts it: in every batch that no
      // refused auth cuts off, it must be acknowledged, whatever the hostile frames around it.
      const valid = `valid-${SEED}-${sent}`;
      batch.splice(random.below(batch.length + 1), 0, {
        text: JSON.stringify({ type: 'send_message', session_id: sessionId, content: valid, client_msg_id: valid, req_id: valid }),
        reqId: valid,
      });
      const before = fuzzer.frames.length;
      for (const item of batch) fuzzer.send(item.binary ? Buffer.from(item.text) : item.text);

      const replyTo = (item: Case) => fuzzer.waitFor((frame) => frame.req_id === item.reqId, 15_000);
      const outcomes = await Promise.allSettled(batch.filter((item) => item.reqId !== undefined).map(replyTo));
      // A refused renewal closes the socket as an expiry does: the queued sends are answered
      // `unavailable` at once, and the `auth_failed` itself comes after the send in flight, which
      // can be after every reply awaited above when the `auth` frame had no readable req_id.
      const closing = (frame: Frame) =>
        frame.code === 'auth_failed' || (frame.code === 'unavailable' && String(frame.message).startsWith('the connection is closing'));
      if (fuzzer.frames.slice(before).some(closing)) {
        // The close follows the refusal: wait for it here, not in the next batch.
        await Promise.race([fuzzer.closed, new Promise((resolve) => setTimeout(resolve, 5_000))]);
        if (fuzzer.closeCode === undefined) problems.push('auth_failed without closing the socket');
      }
      if (fuzzer.closeCode !== undefined) {
        // Only a refused auth may close the socket, with 4001 and after saying so.
        const errors = fuzzer.frames.slice(before).filter((frame) => frame.type === 'error');
        if (fuzzer.closeCode !== 4001 || !errors.some((frame) => frame.code === 'auth_failed')) {
          problems.push(`closed with ${fuzzer.closeCode} ${fuzzer.closeReason}; errors: ${JSON.stringify(errors.slice(-3))}`);
        }
        reconnects++;
        fuzzer = await open();
        continue;
      }
      mustAck.push(valid);
      outcomes.forEach((outcome, i) => {
        if (outcome.status === 'rejected') problems.push(`no reply to ${batch.filter((item) => item.reqId)[i]?.text.slice(0, 300)}`);
      });
      for (const frame of fuzzer.frames.slice(before)) {
        if (frame.type === 'error' && (!EXPECTED_CODES.has(frame.code as string) || typeof frame.message !== 'string')) {
          const cause = batch.find((item) => item.reqId !== undefined && item.reqId === frame.req_id);
          problems.push(`${JSON.stringify(frame)} for ${cause?.text.slice(0, 300) ?? 'a frame without req_id'}`);
        }
        if (frame.type === 'message_ack') acked.set(frame.client_msg_id as string, frame.seq as number);
      }
      expect(problems, `seed ${SEED}`).toEqual([]);
    }

    // The gateway is up and serves everyone. The bystander got every stored message once, in
    // order, the acknowledged ones at the seq their ack named (a send cut off by a refused auth
    // may be stored unacknowledged).
    const probe = await clients.authenticated(stack.wsUrl(0), customer.token);
    expect(await probe.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    const last = await probe.request({
      type: 'send_message',
      session_id: sessionId,
      content: 'after the fuzz',
      client_msg_id: `after-${SEED}`,
    });
    expect(last.type, JSON.stringify(last)).toBe('message_ack');
    acked.set(`after-${SEED}`, last.seq as number);
    const stored = (await probe.request({ type: 'join_session', session_id: sessionId })).last_seq as number;
    expect(stored).toBe(last.seq);
    await bystander.waitFor((frame: Frame) => frame.type === 'new_message' && (frame.message as { seq: number }).seq === stored);
    const delivered = bystander.messages(sessionId);
    expect(delivered.map((message) => message.seq)).toEqual(Array.from({ length: stored }, (_, i) => i + 1));
    const seqOf = new Map(delivered.map((message) => [message.client_msg_id, message.seq]));
    for (const [clientMsgId, seq] of acked) expect(seqOf.get(clientMsgId), clientMsgId).toBe(seq);
    for (const id of mustAck) expect(acked.has(id), `${id} acknowledged`).toBe(true);
    expect(reconnects).toBeGreaterThan(0);
    expect(stack.gateways[0]?.logs.filter((line) => /"level":(50|60)/.test(line)) ?? []).toEqual([]);
  });
});
