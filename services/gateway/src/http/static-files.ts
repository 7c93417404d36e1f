import { readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The demo page (services/gateway/public) and the browser build of the client SDK (libs/client/dist). */
export const PUBLIC_DIR = fileURLToPath(new URL('../../public/', import.meta.url));
export const SDK_DIR = fileURLToPath(new URL('../../../../libs/client/dist/', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
};

function filesOf(dir: string, urlPrefix: string): [string, { body: Buffer; type: string }][] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((name) => CONTENT_TYPES[extname(name)] !== undefined)
    .map((name) => [
      `${urlPrefix}${name}`,
      { body: readFileSync(join(dir, name)), type: CONTENT_TYPES[extname(name)] ?? 'application/octet-stream' },
    ]);
}

export interface StaticSiteOptions {
  /**
   * Served as /config.json so the page knows where the auth API is: `authUrl`, or else port
   * `authPort` on the page's own host. The page may fetch from there and nowhere else but its own
   * origin (its WebSocket is on its own host too).
   */
  publicConfig: Record<string, unknown>;
  publicDir?: string;
  sdkDir?: string;
}

/** A Host header that a CSP source can name: a DNS name or IPv4 address, with an optional port (no IPv6 literal). */
const NAMEABLE_HOST = /^[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::\d{1,5})?$/i;

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    // Not absolute: the page fetches it from its own origin, which 'self' allows.
    return '';
  }
}

/**
 * The CSP `connect-src` for a request's Host: the page's own origin, the auth API's origin, and
 * the page's WebSocket on its own host ('self' covers that in CSP Level 3 browsers; it is named as
 * well for those that do not match ws: and wss: against 'self').
 */
function connectSourcesFor({ authUrl, authPort }: Record<string, unknown>): (host: string | undefined) => string {
  const configuredAuth = typeof authUrl === 'string' && authUrl ? originOf(authUrl) : undefined;
  return (host) => {
    const own = host !== undefined && NAMEABLE_HOST.test(host) ? host.toLowerCase() : undefined;
    const hostname = own?.replace(/:\d+$/, '');
    // Without authUrl the page looks for the auth API on its own host, with its own scheme; a host
    // a source cannot name (an IPv6 literal) leaves only allowing it by scheme.
    const auth = configuredAuth ?? (hostname ? `http://${hostname}:${authPort} https://${hostname}:${authPort}` : 'http: https:');
    return ["'self'", auth, own && `ws://${own} wss://${own}`].filter(Boolean).join(' ');
  };
}

/**
 * Serves a fixed set of files, read once at start into memory: only names found then can be
 * served, so no request path ever reaches the file system.
 */
export function createStaticSite({ publicConfig, publicDir = PUBLIC_DIR, sdkDir = SDK_DIR }: StaticSiteOptions) {
  const files = new Map([...filesOf(publicDir, '/'), ...filesOf(sdkDir, '/sdk/')]);
  const index = files.get('/index.html');
  if (index) files.set('/', index);
  files.set('/config.json', { body: Buffer.from(JSON.stringify(publicConfig)), type: CONTENT_TYPES['.json'] ?? 'application/json' });
  const connectSources = connectSourcesFor(publicConfig);

  return (request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    const file = files.get(path);
    if (!file) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('Not found. Switchboard gateway: open a WebSocket on / or /ws\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end(`${request.method} is not allowed here\n`);
      return;
    }
    response.writeHead(200, {
      // The SDK is public code that pages of other origins import as a module, which a browser
      // fetches in CORS mode: without this, `import … from 'https://gateway/sdk/index.js'` failed
      // everywhere but on the demo page.
      ...(path.startsWith('/sdk/') ? { 'access-control-allow-origin': '*' } : {}),
      'content-type': file.type,
      'content-length': file.body.length,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      // The page is never shown inside another site's frame (clickjacking); older browsers read X-Frame-Options.
      'x-frame-options': 'DENY',
      // The demo page loads only its own scripts and styles, and talks only to the gateway and the auth API.
      'content-security-policy': `default-src 'self'; connect-src ${connectSources(request.headers.host)}; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`,
    });
    response.end(request.method === 'HEAD' ? undefined : file.body);
  };
}
