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
  /** Served as /config.json so the page knows where the auth API is. */
  publicConfig: Record<string, unknown>;
  publicDir?: string;
  sdkDir?: string;
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

  return (request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    const file = request.method === 'GET' || request.method === 'HEAD' ? files.get(path) : undefined;
    if (!file) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('Not found. Switchboard gateway: open a WebSocket on / or /ws\n');
      return;
    }
    response.writeHead(200, {
      'content-type': file.type,
      'content-length': file.body.length,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      // The demo page loads only its own scripts and talks to the gateway and the auth API.
      'content-security-policy':
        "default-src 'self'; connect-src 'self' ws: wss: http: https:; img-src 'self' data:; style-src 'self'; script-src 'self'",
    });
    response.end(request.method === 'HEAD' ? undefined : file.body);
  };
}
