import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, type Stack, startStack } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The script of the chart's `helm test` Pod, run with Node against a running system: what a
 * `helm test` of a release would do, without a cluster. Its `ws` is the image's
 * (`/app/node_modules/ws`); here, the repository's.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const TEMPLATE = join(ROOT, 'deploy/helm/switchboard/templates/tests/websocket-roundtrip.yaml');

/** The script the container runs (`node -e`): the block scalar after `- -e` in the template. */
function helmTestScript(): string {
  const lines = readFileSync(TEMPLATE, 'utf8').split('\n');
  const start = lines.findIndex((line) => line.trim() === '- |');
  if (start < 0) throw new Error('no script block in the helm test template');
  const indent = (lines[start + 1] ?? '').search(/\S/);
  const body: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() !== '' && line.search(/\S/) < indent) break;
    body.push(line.slice(indent));
  }
  const ws = dirname(createRequire(import.meta.url).resolve('ws/package.json'));
  return body.join('\n').replace("require('/app/node_modules/ws')", `require(${JSON.stringify(ws)})`);
}

function runScript(env: Record<string, string>) {
  return spawnSync(process.execPath, ['-e', helmTestScript()], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { PATH: process.env.PATH, ...env },
  });
}

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ gateways: 1 });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

describe("the chart's helm test", () => {
  it("passes against a running system: connected, ping, pong, and a key in auth's JWKS", () => {
    const result = runScript({ GATEWAY_URL: stack.wsUrl(0), AUTH_URL: stack.auth.url('').replace(/\/$/, '') });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain('connected, ping, pong');
    expect(result.stdout).toMatch(/jwks\.json: \d+ signing key\(s\)/);
  });

  it('fails, saying which step, when auth cannot be reached', async () => {
    const closed = await freePort();
    const result = runScript({ GATEWAY_URL: stack.wsUrl(0), AUTH_URL: `http://127.0.0.1:${closed}` });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`fetching http://127.0.0.1:${closed}/.well-known/jwks.json failed`);
  });

  it('fails when no gateway answers', async () => {
    const closed = await freePort();
    const result = runScript({ GATEWAY_URL: `ws://127.0.0.1:${closed}/ws`, AUTH_URL: stack.auth.url('').replace(/\/$/, '') });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`websocket round trip to ws://127.0.0.1:${closed}/ws failed`);
  });
});
