import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { postJson, REPO_ROOT, type Stack, startStack } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The README's two JavaScript examples, run as its reader runs them (saved in the repository,
 * `node <file>.mjs`), against a real stack: the SDK as the customer `alice`, and the raw protocol
 * with `ws` and `TOKEN`. Only their addresses are changed, to the stack's ports.
 */

const run = promisify(execFile);
const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const examples = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
const sdkExample = examples.find((code) => code.includes("from '@switchboard/client'"));
const wsExample = examples.find((code) => code.includes("new WebSocket('ws://localhost:2346/ws')"));

let stack: Stack;
let token: string;
const written: string[] = [];

beforeAll(async () => {
  stack = await startStack();
  // The README's sign-up, then its token.
  await postJson(stack.auth.url('/v1/users'), { username: 'alice', password: 'alice-password' });
  token = (await postJson(stack.auth.url('/v1/token'), { username: 'alice', password: 'alice-password' })).access_token as string;
});

afterAll(async () => {
  for (const file of written) rmSync(file, { force: true });
  await stack?.stop();
});

/** Saves the example in the repository (where its imports resolve), on the stack's ports, and runs it. */
async function runExample(name: string, code: string | undefined, env: Record<string, string> = {}) {
  if (code === undefined) throw new Error(`the README has no ${name} example`);
  const file = join(REPO_ROOT, `.readme-${name}-${process.pid}.mjs`);
  written.push(file);
  const gateway = stack.gateways[0];
  if (!gateway) throw new Error('no gateway');
  writeFileSync(
    file,
    code.replaceAll('localhost:2346', `127.0.0.1:${gateway.port}`).replaceAll('localhost:2347', `127.0.0.1:${stack.auth.port}`),
  );
  return run(process.execPath, [file], { cwd: REPO_ROOT, env: { PATH: process.env.PATH, ...env }, timeout: 20_000 });
}

describe("the README's JavaScript examples", () => {
  it('the SDK example signs in, creates and joins a session, sends, receives its message, and exits', async () => {
    const { stdout } = await runExample('sdk', sdkExample);
    expect(stdout.trim()).toBe('1: Hello!');
  });

  it('the ws example goes from auth to its message_ack, and exits', async () => {
    const { stdout } = await runExample('ws', wsExample, { TOKEN: token });
    const types = [...stdout.matchAll(/type: '([a-z_]+)'/g)].map((match) => match[1]);
    expect(types).toEqual(['connected', 'auth_success', 'session_created', 'joined_session', 'new_message', 'message_ack']);
  });
});
