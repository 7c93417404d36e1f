/**
 * Message content that looks like SQL, markup or script, or that is full of control, bidi and
 * combining characters, is data: stored in PostgreSQL and handed back exactly as sent, through
 * `message_ack`, `new_message` to a member on another gateway, `history`, and the database itself.
 */
import { type Stack, startStack, type TestClient } from '@switchboard/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticate } from './helpers.js';

const controlCharacters = Array.from({ length: 0x1f }, (_, i) => String.fromCharCode(i + 1)).join('');

const SAMPLES: Record<string, string> = {
  'sql: closing a quote and dropping the table': `'); drop table messages; --`,
  'sql: tautology': `1' OR '1'='1`,
  'sql: stacked query with a sleep': `\\'; select pg_sleep(10); --`,
  'sql: dollar quoting and LIKE wildcards': '$$ $1 $tag$ %_\\ $$',
  'sql: comment and semicolon only': '/* */ ; -- ',
  'html: script element': '<script>alert(1)</script>',
  'html: img onerror': '<img src=x onerror=alert(1)>',
  'html: attribute breakout': `"><svg onload=alert(1)>'`,
  'html: javascript url and entities': 'javascript:alert(1) &lt;b&gt; &amp;amp; &#x3C;',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a template injection attempt, sent as plain text on purpose
  'template: injection syntax': "{{constructor.constructor('alert(1)')()}} ${process.exit()} #{7*7}",
  'json: a frame inside content': '{"type":"auth","token":"x","__proto__":{"admin":true}}',
  'json: quotes, backslashes and escape-looking text': '"quoted" \\ \\\\ \\u0000 \\n \\"',
  'control: U+0001..U+001F': `a${controlCharacters}b`,
  'control: DEL U+007F and C1 U+0080..U+009F': `a\u007f\u0080\u0085\u009fb`,
  'separators: U+2028 and U+2029': 'line\u2028separator\u2029paragraph',
  'bidi: right-to-left override': 'invoice\u202Efdp.exe',
  'bidi: every embedding, override and isolate': '\u202A\u202B\u202C\u202D\u202E\u2066\u2067\u2068\u2069 x',
  'invisible: zero-width and BOM': 'a\u200Bb\u200Cc\u200Dd\uFEFFe\u00ADf',
  'emoji: ZWJ sequences, skin tones, flags, keycaps': '👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇺🇦 1️⃣ 😀',
  'combining: stacked marks': `Z${'\u0334\u0321\u031b\u0324'.repeat(40)}a\u0337l\u0335g\u0336o\u0338 e\u0301 n\u0303`,
  'scripts: RTL, CJK and mathematical alphanumerics': 'مرحبا بالعالم שלום 你好 𝕳𝖊𝖑𝖑𝖔',
  'specials: replacement character and noncharacters': '\uFFFD \uFFFE \uFFFF \u{10FFFF}',
  'whitespace kept as sent': '  leading and trailing  \t\r\n',
  'length: 4,000 astral code points (the limit)': '😀'.repeat(4_000),
  'length: one base with 3,999 combining marks': `a${'\u0301'.repeat(3_999)}`,
};

const API_KEY = 'content-test-api-key';
const SUBJECT = `'); drop table sessions; -- <b onmouseover=alert(1)>refund</b> \u202E`;

let stack: Stack;
let customer: TestClient;
let agent: TestClient;
let sessionId: number;
const sent = new Map<string, string>();

beforeAll(async () => {
  stack = await startStack({ gateways: 2, env: { AUTH_API_KEYS: API_KEY }, gatewayEnv: { RATE_LIMIT_PER_SEC: '1000' } });
  const [customerUser, agentUser] = await Promise.all([stack.user('user'), stack.user('agent')]);
  customer = (await authenticate(stack.wsUrl(0), customerUser.token)).client;
  agent = (await authenticate(stack.wsUrl(1), agentUser.token)).client;
  const created = await customer.request({ type: 'create_session', subject: SUBJECT });
  expect(created).toMatchObject({ type: 'session_created', session: { subject: SUBJECT } });
  sessionId = (created.session as { id: number }).id;
  expect((await agent.request({ type: 'join_session', session_id: sessionId })).type).toBe('joined_session');

  // One message per sample, plus one whose client_msg_id is itself an injection attempt.
  const entries = [...Object.entries(SAMPLES), ['client_msg_id', `x'); delete from messages; --`] as const];
  for (const [index, [, content]] of entries.entries()) {
    const clientMsgId = index === entries.length - 1 ? content : `sample-${index}`;
    const ack = await customer.request({ type: 'send_message', session_id: sessionId, content, client_msg_id: clientMsgId });
    expect(ack).toMatchObject({ type: 'message_ack', client_msg_id: clientMsgId, seq: index + 1 });
    sent.set(clientMsgId, content);
  }
  await agent.waitForCount((frame) => frame.type === 'new_message', sent.size);
});

afterAll(async () => {
  await customer?.close();
  await agent?.close();
  await stack?.stop();
});

describe('hostile-looking content', () => {
  it('reaches a member on another gateway verbatim', () => {
    const received = agent.messages(sessionId);
    expect(received.map((message) => message.seq)).toEqual(Array.from({ length: sent.size }, (_, i) => i + 1));
    for (const message of received) expect(message.content).toBe(sent.get(message.client_msg_id));
  });

  it('comes back verbatim from history', async () => {
    const page = await agent.request({ type: 'history', session_id: sessionId, limit: 200 });
    const messages = page.messages as { content: string; client_msg_id: string }[];
    expect(messages).toHaveLength(sent.size);
    for (const message of messages) expect(message.content).toBe(sent.get(message.client_msg_id));
  });

  it('is stored verbatim in PostgreSQL, and nothing was dropped or deleted', async () => {
    const client = new pg.Client({ connectionString: stack.database.url });
    await client.connect();
    try {
      const rows = (
        await client.query<{ client_msg_id: string; content: string; code_points: number }>(
          'select client_msg_id, content, char_length(content) as code_points from messages where session_id = $1 order by seq',
          [sessionId],
        )
      ).rows;
      expect(rows).toHaveLength(sent.size);
      for (const row of rows) {
        expect(row.content).toBe(sent.get(row.client_msg_id));
        expect(row.code_points).toBe([...row.content].length);
      }
      const longest = `sample-${Object.keys(SAMPLES).indexOf('length: 4,000 astral code points (the limit)')}`;
      expect(rows.find((row) => row.client_msg_id === longest)?.code_points).toBe(4_000);
      const session = await client.query<{ subject: string }>('select subject from sessions where id = $1', [sessionId]);
      expect(session.rows[0]?.subject).toBe(SUBJECT);
    } finally {
      await client.end();
    }
  });

  it('counts the limit in code points: 4,001 astral characters are refused', async () => {
    expect(await customer.request({ type: 'send_message', session_id: sessionId, content: '😀'.repeat(4_001) })).toMatchObject({
      type: 'error',
      code: 'payload_too_large',
    });
  });

  it('refuses text PostgreSQL would not store as sent (a NUL, a lone surrogate) instead of altering it', async () => {
    const unstorable = ['nul \u0000 inside', 'lone high \uD800 surrogate', 'lone low \uDC00 surrogate', 'reversed pair \uDE00\uD83D'];
    for (const [index, text] of unstorable.entries()) {
      const refusals = [
        await customer.request({ type: 'send_message', session_id: sessionId, content: text, client_msg_id: `unstorable-${index}` }),
        await customer.request({ type: 'send_message', session_id: sessionId, content: 'fine', client_msg_id: text }),
        await customer.request({ type: 'create_session', subject: text }),
      ];
      for (const refusal of refusals) expect(refusal).toMatchObject({ type: 'error', code: 'invalid_message' });
    }
    // Nothing of it was stored, and the socket still works.
    expect((await customer.request({ type: 'history', session_id: sessionId, limit: 1 })).messages).toMatchObject([{ seq: sent.size }]);
  });
});

describe('the auth API given text PostgreSQL cannot store as sent', () => {
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const response = await fetch(stack.auth.url(path), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const unstorable = ['nul \u0000 inside', 'lone \uD800 surrogate'];

  it('answers a login with it as wrong credentials, not as a server error', async () => {
    for (const text of unstorable) {
      expect((await post('/v1/token', { username: text, password: 'whatever-password' })).status).toBe(401);
      expect((await post('/v1/token', { username: `user-${process.pid}`, password: text })).status).toBe(401);
    }
  });

  it('refuses it in a display name or an external id with 400', async () => {
    for (const text of unstorable) {
      expect(
        await post('/v1/users', { username: `shown-${process.pid}`, password: 'long-enough-password', display_name: text }),
      ).toMatchObject({
        status: 400,
        body: { error: { code: 'invalid_body' } },
      });
      const bearer = { authorization: `Bearer ${API_KEY}` };
      expect(await post('/v1/service-token', { external_id: text, role: 'user' }, bearer)).toMatchObject({ status: 400 });
      expect(await post('/v1/service-token', { external_id: 'crm-1', role: 'user', display_name: text }, bearer)).toMatchObject({
        status: 400,
      });
    }
  });

  it('stores SQL- and markup-looking display names and external ids verbatim', async () => {
    const hostile = `'); drop table users; -- <script>alert(1)</script> \u202E`;
    const created = await post('/v1/users', {
      username: `hostile-${process.pid}`,
      password: 'long-enough-password',
      display_name: hostile,
    });
    expect(created).toMatchObject({ status: 201, body: { display_name: hostile } });
    const first = await post(
      '/v1/service-token',
      { external_id: hostile, role: 'user', display_name: hostile },
      { authorization: `Bearer ${API_KEY}` },
    );
    const again = await post('/v1/service-token', { external_id: hostile, role: 'user' }, { authorization: `Bearer ${API_KEY}` });
    expect(first.status).toBe(200);
    expect((again.body.user as { id: number }).id).toBe((first.body.user as { id: number }).id);
  });
});
