import { describe, expect, it } from 'vitest';
import { authPerTest } from './auth-per-test.js';

const auth = authPerTest('auth_cors');

describe('CORS_ORIGINS', () => {
  it('matches origins as browsers send them, however they were written', async () => {
    // Compared as written before, so a browser on https://chat.example.com got no CORS headers.
    const service = await auth.start({ CORS_ORIGINS: 'https://Chat.Example.com/, https://support.example.com:443' });
    const preflight = (origin: string) =>
      fetch(service.url('/v1/token'), {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });
    for (const origin of ['https://chat.example.com', 'https://support.example.com']) {
      expect((await preflight(origin)).headers.get('access-control-allow-origin'), origin).toBe(origin);
    }
    expect((await preflight('https://evil.example')).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('lets a page on another origin read Retry-After', async () => {
    const service = await auth.start({ CORS_ORIGINS: 'https://chat.example.com' });
    // A body the API refuses: the header is exposed on every answer, a 429's and a 503's alike.
    const response = await fetch(service.url('/v1/token'), {
      method: 'POST',
      headers: { origin: 'https://chat.example.com', 'content-type': 'application/json' },
      body: '{}',
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('access-control-allow-origin')).toBe('https://chat.example.com');
    expect(response.headers.get('access-control-expose-headers')?.toLowerCase().split(/,\s*/)).toContain('retry-after');
  });
});
