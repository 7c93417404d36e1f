import { MAX_AUTH_FRAME_BYTES, MAX_TOKEN_CHARS } from '@switchboard/protocol';
import { describe, expect, it } from 'vitest';
import { loadGatewayConfig } from './config.js';

describe('MAX_FRAME_BYTES', () => {
  it('is refused below the longest auth frame, with which no client could authenticate', () => {
    // Before: anything from 256 bytes was taken; a real token's auth frame is some 400–600.
    expect(() => loadGatewayConfig({ MAX_FRAME_BYTES: '1024' })).toThrow(/MAX_FRAME_BYTES/);
    expect(loadGatewayConfig({ MAX_FRAME_BYTES: String(MAX_AUTH_FRAME_BYTES) }).maxFrameBytes).toBe(MAX_AUTH_FRAME_BYTES);
  });

  it('takes the longest auth frame the protocol allows', () => {
    const longest = JSON.stringify({ type: 'auth', token: 'x'.repeat(MAX_TOKEN_CHARS), req_id: '\u0001'.repeat(128) });
    expect(Buffer.byteLength(longest)).toBeLessThanOrEqual(MAX_AUTH_FRAME_BYTES);
    // A req_id of 128 characters outside the BMP, each written as two escapes, as a client's JSON may.
    const escaped = `{"type":"auth","token":"${'x'.repeat(MAX_TOKEN_CHARS)}","req_id":"${'\\ud83d\\ude00'.repeat(128)}"}`;
    expect(JSON.parse(escaped).req_id).toBe('😀'.repeat(128));
    expect(Buffer.byteLength(escaped)).toBeLessThanOrEqual(MAX_AUTH_FRAME_BYTES);
  });
});
