import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createStaticSite } from '../src/http/static-files.js';

/** The demo page's HTTP headers: what it may load and connect to, and that no other site may frame it. */

const servers: Server[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.close();
    await once(server, 'close');
  }
});

async function serve(publicConfig: Record<string, unknown>): Promise<number> {
  const server = createServer(createStaticSite({ publicConfig }));
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** GET (or `method`) with the Host header a browser on `host` sends. */
function get(port: number, path: string, host: string, method = 'GET'): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, method, headers: { host } }, (response) => {
      response.resume();
      response.once('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers }));
    })
      .once('error', reject)
      .end();
  });
}

/** The CSP as directive → its sources. */
function policy(headers: IncomingHttpHeaders): Map<string, string[]> {
  const header = headers['content-security-policy'];
  expect(typeof header).toBe('string');
  return new Map(
    String(header)
      .split(';')
      .map((directive) => directive.trim().split(/\s+/))
      .map(([name = '', ...sources]) => [name, sources]),
  );
}

describe('the demo page headers', () => {
  it('forbid framing, base and form targets on /, and let the page connect only to itself and the configured auth API', async () => {
    const port = await serve({ authUrl: 'https://Auth.Example.com:8443/', authPort: 2347 });
    const { status, headers } = await get(port, '/', 'chat.example.com');

    expect(status).toBe(200);
    expect(headers['content-type']).toBe('text/html; charset=utf-8');
    expect(headers['x-frame-options']).toBe('DENY');
    expect(headers['x-content-type-options']).toBe('nosniff');
    const csp = policy(headers);
    expect(csp.get('frame-ancestors')).toEqual(["'none'"]);
    expect(csp.get('base-uri')).toEqual(["'none'"]);
    expect(csp.get('form-action')).toEqual(["'none'"]);
    expect(csp.get('default-src')).toEqual(["'self'"]);
    expect(csp.get('script-src')).toEqual(["'self'"]);
    expect(csp.get('connect-src')).toEqual(["'self'", 'https://auth.example.com:8443', 'ws://chat.example.com', 'wss://chat.example.com']);
  });

  it('without an auth URL, allow the auth port on the host the page was loaded from', async () => {
    const port = await serve({ authUrl: null, authPort: 4001 });
    const { headers } = await get(port, '/', 'LocalHost:2346');

    expect(policy(headers).get('connect-src')).toEqual([
      "'self'",
      'http://localhost:4001',
      'https://localhost:4001',
      'ws://localhost:2346',
      'wss://localhost:2346',
    ]);
  });

  it('never copy a Host header that is not a plain host into the policy', async () => {
    const port = await serve({ authUrl: null, authPort: 4001 });
    const { headers } = await get(port, '/', "evil.example; script-src 'unsafe-inline'");

    const csp = policy(headers);
    expect(csp.get('script-src')).toEqual(["'self'"]);
    expect(csp.get('connect-src')).toEqual(["'self'", 'http:', 'https:']);
  });

  it('answer another method on a file 405 with Allow, and a path of no file 404', async () => {
    const port = await serve({ authPort: 2347 });
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const { status, headers } = await get(port, '/', 'chat.example.com', method);
      expect(status, method).toBe(405);
      expect(headers.allow, method).toBe('GET, HEAD');
    }
    expect((await get(port, '/config.json', 'chat.example.com', 'POST')).status).toBe(405);
    expect((await get(port, '/nothing-here', 'chat.example.com', 'POST')).status).toBe(404);
    expect((await get(port, '/', 'chat.example.com', 'HEAD')).status).toBe(200);
  });

  it('let pages of any origin import the SDK as a module, and nothing else', async () => {
    const port = await serve({ authPort: 2347 });
    for (const path of ['/sdk/index.js', '/sdk/chat-client.js'])
      expect((await get(port, path, 'chat.example.com')).headers['access-control-allow-origin'], path).toBe('*');
    for (const path of ['/', '/app.js', '/config.json'])
      expect((await get(port, path, 'chat.example.com')).headers['access-control-allow-origin'], path).toBeUndefined();
  });

  it('send the same headers with every file, the SDK and /config.json included', async () => {
    const port = await serve({ authUrl: 'https://auth.example.com', authPort: 2347 });
    for (const path of ['/app.js', '/style.css', '/config.json', '/sdk/index.js']) {
      const { status, headers } = await get(port, path, 'chat.example.com');
      expect(status, path).toBe(200);
      expect(headers['x-frame-options'], path).toBe('DENY');
      expect(policy(headers).get('connect-src'), path).toEqual([
        "'self'",
        'https://auth.example.com',
        'ws://chat.example.com',
        'wss://chat.example.com',
      ]);
    }
  });
});
