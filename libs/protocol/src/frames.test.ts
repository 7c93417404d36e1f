import { describe, expect, it } from 'vitest';
import { ErrorCode } from './errors.js';
import { type ClientFrameType, clientFrameSchemas, contentLength, decodeClientFrame, FrameError, HISTORY_MAX_LIMIT } from './frames.js';

const encode = (frame: unknown): string => JSON.stringify(frame);

/** Decodes `text`, expecting a FrameError, and returns it. */
function decodeError(text: string): FrameError {
  try {
    decodeClientFrame(text);
  } catch (error) {
    if (error instanceof FrameError) return error;
    throw error;
  }
  throw new Error(`expected decodeClientFrame to throw for ${text}`);
}

describe('decodeClientFrame', () => {
  describe('valid frames', () => {
    it('decodes an auth frame with its token', () => {
      expect(decodeClientFrame(encode({ type: 'auth', token: 'abc.def.ghi' }))).toStrictEqual({ type: 'auth', token: 'abc.def.ghi' });
    });

    it('decodes a create_session frame with and without a subject', () => {
      expect(decodeClientFrame(encode({ type: 'create_session', subject: 'Billing' }))).toStrictEqual({
        type: 'create_session',
        subject: 'Billing',
      });
      expect(decodeClientFrame(encode({ type: 'create_session' }))).toStrictEqual({ type: 'create_session' });
    });

    it('trims the subject of a create_session frame', () => {
      expect(decodeClientFrame(encode({ type: 'create_session', subject: '  Billing  ' }))).toStrictEqual({
        type: 'create_session',
        subject: 'Billing',
      });
    });

    it('decodes a join_session frame without last_seq', () => {
      expect(decodeClientFrame(encode({ type: 'join_session', session_id: 7 }))).toStrictEqual({ type: 'join_session', session_id: 7 });
    });

    it('decodes a join_session frame with last_seq, including zero', () => {
      expect(decodeClientFrame(encode({ type: 'join_session', session_id: 7, last_seq: 42 }))).toStrictEqual({
        type: 'join_session',
        session_id: 7,
        last_seq: 42,
      });
      expect(decodeClientFrame(encode({ type: 'join_session', session_id: 7, last_seq: 0 }))).toStrictEqual({
        type: 'join_session',
        session_id: 7,
        last_seq: 0,
      });
    });

    it('decodes a leave_session frame with its session_id', () => {
      expect(decodeClientFrame(encode({ type: 'leave_session', session_id: 3 }))).toStrictEqual({ type: 'leave_session', session_id: 3 });
    });

    it('decodes a send_message frame with a client_msg_id', () => {
      expect(decodeClientFrame(encode({ type: 'send_message', session_id: 3, content: 'hello', client_msg_id: 'c-1' }))).toStrictEqual({
        type: 'send_message',
        session_id: 3,
        content: 'hello',
        client_msg_id: 'c-1',
      });
    });

    it('decodes a send_message frame without a client_msg_id', () => {
      expect(decodeClientFrame(encode({ type: 'send_message', session_id: 3, content: 'hello' }))).toStrictEqual({
        type: 'send_message',
        session_id: 3,
        content: 'hello',
      });
    });

    it('keeps the content of a send_message frame untrimmed', () => {
      const frame = decodeClientFrame(encode({ type: 'send_message', session_id: 3, content: '  hi  ' }));

      expect(frame).toStrictEqual({ type: 'send_message', session_id: 3, content: '  hi  ' });
    });

    it('decodes a history frame with before_seq and limit', () => {
      expect(decodeClientFrame(encode({ type: 'history', session_id: 3, before_seq: 100, limit: 20 }))).toStrictEqual({
        type: 'history',
        session_id: 3,
        before_seq: 100,
        limit: 20,
      });
    });

    it('decodes a history frame with only a session_id', () => {
      expect(decodeClientFrame(encode({ type: 'history', session_id: 3 }))).toStrictEqual({ type: 'history', session_id: 3 });
    });

    it('accepts a history limit of exactly 1 and exactly the maximum', () => {
      expect(decodeClientFrame(encode({ type: 'history', session_id: 3, limit: 1 }))).toMatchObject({ limit: 1 });
      expect(decodeClientFrame(encode({ type: 'history', session_id: 3, limit: HISTORY_MAX_LIMIT }))).toMatchObject({
        limit: HISTORY_MAX_LIMIT,
      });
    });

    it('decodes a list_sessions frame with and without filters', () => {
      expect(decodeClientFrame(encode({ type: 'list_sessions' }))).toStrictEqual({ type: 'list_sessions' });
      expect(decodeClientFrame(encode({ type: 'list_sessions', status: 'closed', limit: 10 }))).toStrictEqual({
        type: 'list_sessions',
        status: 'closed',
        limit: 10,
      });
      expect(decodeClientFrame(encode({ type: 'list_sessions', before_id: 1042 }))).toStrictEqual({
        type: 'list_sessions',
        before_id: 1042,
      });
      expect(decodeError(encode({ type: 'list_sessions', before_id: 0 })).message).toContain('before_id');
    });

    it('decodes a ping frame', () => {
      expect(decodeClientFrame(encode({ type: 'ping' }))).toStrictEqual({ type: 'ping' });
    });

    it('keeps a string req_id', () => {
      expect(decodeClientFrame(encode({ type: 'ping', req_id: 'r-1' }))).toStrictEqual({ type: 'ping', req_id: 'r-1' });
    });

    it('keeps a numeric req_id', () => {
      expect(decodeClientFrame(encode({ type: 'leave_session', session_id: 1, req_id: 17 }))).toStrictEqual({
        type: 'leave_session',
        session_id: 1,
        req_id: 17,
      });
    });

    it('drops unknown extra fields instead of rejecting the frame', () => {
      const frame = decodeClientFrame(encode({ type: 'ping', req_id: 1, extra: true, nested: { a: 1 } }));

      expect(frame).toStrictEqual({ type: 'ping', req_id: 1 });
      expect(frame).not.toHaveProperty('extra');
    });
  });

  describe('input that is not a JSON object', () => {
    it('rejects text that is not JSON as invalid_message', () => {
      const error = decodeError('{"type": "ping"');

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.reqId).toBeUndefined();
    });

    it('rejects an empty string as invalid_message', () => {
      expect(decodeError('').code).toBe(ErrorCode.InvalidMessage);
    });

    it.each([
      ['an array', '[{"type":"ping"}]'],
      ['null', 'null'],
      ['a number', '42'],
      ['a string', '"ping"'],
      ['a boolean', 'true'],
    ])('rejects %s as invalid_message', (_label, text) => {
      const error = decodeError(text);

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain('object');
    });
  });

  describe('the type field', () => {
    it('rejects a frame without a type as invalid_message, echoing req_id', () => {
      const error = decodeError(encode({ req_id: 'r-1', session_id: 1 }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain('type');
      expect(error.reqId).toBe('r-1');
    });

    it.each([
      ['a number', 5],
      ['null', null],
      ['an object', { name: 'ping' }],
      ['an array', ['ping']],
    ])('rejects a type that is %s as invalid_message', (_label, type) => {
      const error = decodeError(encode({ type, req_id: 9 }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.reqId).toBe(9);
    });

    it('rejects an unknown type as unknown_type, echoing req_id', () => {
      const error = decodeError(encode({ type: 'shout', req_id: 'r-2' }));

      expect(error.code).toBe(ErrorCode.UnknownType);
      expect(error.message).toContain('shout');
      expect(error.reqId).toBe('r-2');
    });

    it('matches type names case-sensitively', () => {
      expect(decodeError(encode({ type: 'PING' })).code).toBe(ErrorCode.UnknownType);
    });

    it('truncates a very long unknown type in the message', () => {
      const error = decodeError(encode({ type: 'x'.repeat(10_000) }));

      expect(error.code).toBe(ErrorCode.UnknownType);
      expect(error.message.length).toBeLessThan(200);
    });

    it('truncates an unknown type by characters, never leaving half of an emoji', () => {
      const error = decodeError(encode({ type: `${'a'.repeat(63)}😀😀` }));

      // Before, the cut left a lone surrogate, which strict JSON decoders refuse.
      expect(error.message).toContain(`${'a'.repeat(63)}😀"`);
      expect(error.message).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])/u);
    });

    it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'])(
      'treats the type "%s" as unknown_type rather than looking it up on the prototype',
      (type) => {
        const error = decodeError(`{"type":${JSON.stringify(type)},"req_id":3}`);

        expect(error.code).toBe(ErrorCode.UnknownType);
        expect(error.reqId).toBe(3);
      },
    );
  });

  describe('req_id echo on errors', () => {
    it('echoes a numeric req_id on a field error', () => {
      const error = decodeError(encode({ type: 'leave_session', req_id: 12 }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.reqId).toBe(12);
    });

    it('echoes a string req_id on a field error', () => {
      const error = decodeError(encode({ type: 'leave_session', req_id: 'abc' }));

      expect(error.reqId).toBe('abc');
    });

    it('refuses, without echoing, a req_id that is neither a string nor a number, whatever the type', () => {
      // Before, a frame of an unknown type was answered unknown_type, though docs/protocol.md
      // refuses such a req_id with invalid_message.
      for (const type of ['shout', 'ping']) {
        const error = decodeError(encode({ type, req_id: { id: 1 } }));

        expect(error.code).toBe(ErrorCode.InvalidMessage);
        expect(error.reqId).toBeUndefined();
      }
    });

    it('refuses a numeric req_id that JSON cannot carry exactly, which its reply could not echo', () => {
      // 2^64 - 1 is parsed as 18446744073709552000: before, the pong carried that.
      const error = decodeError('{"type":"ping","req_id":18446744073709551615}');

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain('req_id');
      expect(decodeClientFrame(encode({ type: 'ping', req_id: Number.MAX_SAFE_INTEGER }))).toStrictEqual({
        type: 'ping',
        req_id: Number.MAX_SAFE_INTEGER,
      });
      expect(decodeClientFrame(encode({ type: 'ping', req_id: -Number.MAX_SAFE_INTEGER }))).toMatchObject({
        req_id: -Number.MAX_SAFE_INTEGER,
      });
    });

    it('does not echo a req_id string longer than 128 characters', () => {
      const error = decodeError(encode({ type: 'shout', req_id: 'r'.repeat(129) }));

      expect(error.reqId).toBeUndefined();
    });

    it('rejects a valid frame whose req_id is unreadable as invalid_message naming req_id', () => {
      const error = decodeError(encode({ type: 'ping', req_id: [1] }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain('req_id');
      expect(error.reqId).toBeUndefined();
    });
  });

  describe('missing and wrong-typed fields', () => {
    it.each<[string, Record<string, unknown>, string]>([
      ['auth without token', { type: 'auth' }, 'token'],
      ['join_session without session_id', { type: 'join_session' }, 'session_id'],
      ['leave_session without session_id', { type: 'leave_session' }, 'session_id'],
      ['send_message without session_id', { type: 'send_message', content: 'hi' }, 'session_id'],
      ['send_message without content', { type: 'send_message', session_id: 1 }, 'content'],
      ['history without session_id', { type: 'history' }, 'session_id'],
    ])('rejects %s as invalid_message saying the field is required', (_label, frame, field) => {
      const error = decodeError(encode({ ...frame, req_id: 'r' }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain(`${field} is required`);
      expect(error.reqId).toBe('r');
    });

    it.each<[string, Record<string, unknown>, string]>([
      ['a numeric token', { type: 'auth', token: 123 }, 'token'],
      ['an empty token', { type: 'auth', token: '' }, 'token'],
      ['a numeric subject', { type: 'create_session', subject: 5 }, 'subject'],
      ['a subject over 200 characters', { type: 'create_session', subject: 's'.repeat(201) }, 'subject'],
      ['a numeric content', { type: 'send_message', session_id: 1, content: 5 }, 'content'],
      ['a string last_seq', { type: 'join_session', session_id: 1, last_seq: '4' }, 'last_seq'],
      ['an unknown list_sessions status', { type: 'list_sessions', status: 'pending' }, 'status'],
      ['a numeric client_msg_id', { type: 'send_message', session_id: 1, content: 'hi', client_msg_id: 7 }, 'client_msg_id'],
    ])('rejects %s as invalid_message naming the field', (_label, frame, field) => {
      const error = decodeError(encode(frame));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain(field);
    });

    it('takes an optional field sent as null for one left out, as other languages send them', () => {
      expect(decodeClientFrame(encode({ type: 'join_session', session_id: 3, last_seq: null, req_id: null }))).toEqual({
        type: 'join_session',
        session_id: 3,
      });
      expect(decodeClientFrame(encode({ type: 'send_message', session_id: 3, content: 'hi', client_msg_id: null, req_id: 'r' }))).toEqual({
        type: 'send_message',
        session_id: 3,
        content: 'hi',
        req_id: 'r',
      });
      expect(decodeClientFrame(encode({ type: 'create_session', subject: null }))).toEqual({ type: 'create_session' });
      expect(decodeClientFrame(encode({ type: 'history', session_id: 3, before_seq: null, limit: null }))).toEqual({
        type: 'history',
        session_id: 3,
      });
    });

    it('still refuses a required field sent as null, saying it is required', () => {
      const error = decodeError(encode({ type: 'send_message', session_id: 3, content: null, req_id: 'r' }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain('content is required');
      expect(error.reqId).toBe('r');
    });

    it('reports every invalid field in the message', () => {
      const error = decodeError(encode({ type: 'send_message', session_id: 0, content: '' }));

      expect(error.message).toContain('session_id');
      expect(error.message).toContain('content');
    });
  });

  describe('session_id', () => {
    it.each([
      ['zero', 0],
      ['negative', -1],
      ['not an integer', 1.5],
      ['a string', '1'],
      ['above MAX_SAFE_INTEGER', Number.MAX_SAFE_INTEGER + 2],
    ])('rejects a session_id that is %s', (_label, sessionId) => {
      const error = decodeError(encode({ type: 'join_session', session_id: sessionId, req_id: 4 }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain('session_id');
      expect(error.reqId).toBe(4);
    });

    it('accepts session_id equal to MAX_SAFE_INTEGER', () => {
      expect(decodeClientFrame(encode({ type: 'leave_session', session_id: Number.MAX_SAFE_INTEGER }))).toStrictEqual({
        type: 'leave_session',
        session_id: Number.MAX_SAFE_INTEGER,
      });
    });
  });

  describe('numeric bounds', () => {
    it('rejects a negative last_seq', () => {
      const error = decodeError(encode({ type: 'join_session', session_id: 1, last_seq: -1 }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain('last_seq');
    });

    it('rejects a non-integer last_seq', () => {
      expect(decodeError(encode({ type: 'join_session', session_id: 1, last_seq: 2.5 })).message).toContain('last_seq');
    });

    it.each([
      ['0', 0],
      ['over the maximum', HISTORY_MAX_LIMIT + 1],
      ['not an integer', 10.5],
    ])('rejects a history limit that is %s', (_label, limit) => {
      const error = decodeError(encode({ type: 'history', session_id: 1, limit }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain('limit');
    });

    it('rejects a list_sessions limit of 0 or over the maximum', () => {
      expect(decodeError(encode({ type: 'list_sessions', limit: 0 })).message).toContain('limit');
      expect(decodeError(encode({ type: 'list_sessions', limit: HISTORY_MAX_LIMIT + 1 })).message).toContain('limit');
    });

    it('rejects a before_seq of 0', () => {
      expect(decodeError(encode({ type: 'history', session_id: 1, before_seq: 0 })).message).toContain('before_seq');
    });
  });

  describe('send_message content and client_msg_id', () => {
    it.each([
      ['empty', ''],
      ['only spaces', '   '],
      ['only mixed whitespace', ' \t\n\r '],
      ['only non-ASCII whitespace', '\u00a0\u3000'],
    ])('rejects content that is %s', (_label, content) => {
      const error = decodeError(encode({ type: 'send_message', session_id: 1, content, req_id: 'm' }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain('content');
      expect(error.reqId).toBe('m');
    });

    it('rejects an empty client_msg_id', () => {
      const error = decodeError(encode({ type: 'send_message', session_id: 1, content: 'hi', client_msg_id: '' }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain('client_msg_id');
    });

    it('rejects a client_msg_id over 128 characters', () => {
      const error = decodeError(encode({ type: 'send_message', session_id: 1, content: 'hi', client_msg_id: 'c'.repeat(129) }));

      expect(error.code).toBe(ErrorCode.InvalidMessage);
      expect(error.message).toContain('client_msg_id');
    });

    it('accepts a client_msg_id of exactly 128 characters', () => {
      const clientMsgId = 'c'.repeat(128);

      expect(decodeClientFrame(encode({ type: 'send_message', session_id: 1, content: 'hi', client_msg_id: clientMsgId }))).toMatchObject({
        client_msg_id: clientMsgId,
      });
    });
  });
});

describe('FrameError', () => {
  it('is an Error carrying its code, message and req_id', () => {
    const error = new FrameError(ErrorCode.UnknownType, 'unknown frame type "x"', 'r-9');

    expect(error).toBeInstanceOf(Error);
    expect(error).toBeInstanceOf(FrameError);
    expect(error.name).toBe('FrameError');
    expect(error.code).toBe('unknown_type');
    expect(error.message).toBe('unknown frame type "x"');
    expect(error.reqId).toBe('r-9');
  });

  it('leaves reqId undefined when none is given', () => {
    expect(new FrameError(ErrorCode.InvalidMessage, 'bad').reqId).toBeUndefined();
  });
});

describe('clientFrameSchemas', () => {
  it("has a schema for exactly the client frame types of docs/protocol.md (the contract's, and list_sessions)", () => {
    const expected: ClientFrameType[] = [
      'auth',
      'create_session',
      'join_session',
      'leave_session',
      'send_message',
      'history',
      'list_sessions',
      'ping',
    ];

    expect(Object.keys(clientFrameSchemas).sort()).toEqual([...expected].sort());
  });

  it('rejects a frame whose type does not match the schema it is parsed with', () => {
    expect(clientFrameSchemas.ping.safeParse({ type: 'auth', token: 't' }).success).toBe(false);
    expect(clientFrameSchemas.ping.safeParse({ type: 'ping' }).success).toBe(true);
  });
});

describe('contentLength', () => {
  it('returns 0 for the empty string', () => {
    expect(contentLength('')).toBe(0);
  });

  it('counts ASCII characters one each', () => {
    expect(contentLength('hello, world')).toBe(12);
  });

  it('counts multi-byte BMP characters one each', () => {
    expect(contentLength('héllo')).toBe(5);
    expect(contentLength('日本語')).toBe(3);
    expect(contentLength('€')).toBe(1);
  });

  it('counts an emoji made of a surrogate pair as one', () => {
    expect('😀'.length).toBe(2);
    expect(contentLength('😀')).toBe(1);
    expect(contentLength('a😀b😀')).toBe(4);
  });

  it('counts a lone high surrogate as one', () => {
    expect(contentLength('\ud83d')).toBe(1);
    expect(contentLength('a\ud83d')).toBe(2);
    expect(contentLength('\ud83da')).toBe(2);
  });

  it('counts a lone low surrogate as one', () => {
    expect(contentLength('\ude00')).toBe(1);
    expect(contentLength('a\ude00b')).toBe(3);
  });

  it('counts a low surrogate followed by a high surrogate as two', () => {
    expect(contentLength('\ude00\ud83d')).toBe(2);
  });

  it('pairs a high surrogate only with the low surrogate right after it', () => {
    expect(contentLength('\ud83d\ud83d\ude00')).toBe(2);
  });

  it('agrees with code point iteration', () => {
    const text = 'Ünïcødé 😀👍🏽 \ud800 x \udfff 𝔘';

    expect(contentLength(text)).toBe([...text].length);
  });
});
