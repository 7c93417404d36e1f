import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { metricValue, type ServiceProcess, startProcess, TestClients, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedEnv } from './support.js';

const dataDir = mkdtempSync(join(tmpdir(), 'switchboard-embedded-'));
let system: ServiceProcess;
let env: Record<string, string>;
const clients = new TestClients();

async function start(extraEnv: Record<string, string> = {}): Promise<ServiceProcess> {
  // No NATS_URL, no DATABASE_URL: the in-process bus and the embedded PostgreSQL.
  return startProcess('embedded', 'apps/embedded/dist/main.js', { env: { ...env, ...extraEnv }, readyTimeoutMs: 60_000 });
}

/** Stops the system (its clients first) and starts it again with `extraEnv`, until it has printed its banner. */
async function restart(extraEnv: Record<string, string> = {}): Promise<void> {
  await clients.closeAll();
  expect(await system.stop()).toBe(0);
  system = await start(extraEnv);
  await waitFor(() => system.logs.some((line) => line.includes('Switchboard is running')), 10_000, 'the banner');
}

/** Until a line of the process's output contains `text`. */
const logged = (text: string) => waitFor(() => system.logs.some((line) => line.includes(text)), 10_000, `a line with "${text}"`);

async function post(path: string, body: unknown, token?: string) {
  const response = await fetch(`http://127.0.0.1:${env.AUTH_PORT}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const client = (token: string) => clients.authenticated(`ws://127.0.0.1:${system.port}/ws`, token);

/** Logins auth refused since this process started: each counts against the address and the name. */
const failedLogins = async () =>
  metricValue(await (await fetch(`http://127.0.0.1:${env.AUTH_OPS_PORT}/metrics`)).text(), 'switchboard_auth_logins_total', {
    outcome: 'failure',
  });

beforeAll(async () => {
  env = await embeddedEnv(dataDir);
  system = await start();
});

afterAll(async () => {
  await clients.closeAll();
  await system?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('the all-in-one process', () => {
  it('prints where to connect and how to log in', async () => {
    await waitFor(() => system.logs.some((line) => line.includes('Switchboard is running')), 10_000, 'the banner');
    const output = system.logs.join('\n');
    expect(output).toContain(`ws://127.0.0.1:${env.PORT}/ws`);
    expect(output).toContain(`http://127.0.0.1:${env.AUTH_PORT}`);
    expect(output).toContain(`http://127.0.0.1:${env.PORT}/`);
    expect(output).toMatch(/demo agent: agent \/ agent-password/);
  });

  it('runs the seed flow: a customer and the demo agent chat', async () => {
    expect((await post('/v1/users', { username: 'carla', password: 'carla-password' })).status).toBe(201);
    const customerToken = (await post('/v1/token', { username: 'carla', password: 'carla-password' })).body.access_token as string;
    const agentToken = (await post('/v1/token', { username: 'agent', password: 'agent-password' })).body.access_token as string;
    const customer = await client(customerToken);
    const agent = await client(agentToken);

    const sessionId = ((await customer.request({ type: 'create_session', subject: 'Refund' })).session as { id: number }).id;
    expect((await customer.request({ type: 'join_session', session_id: sessionId })).last_seq).toBe(0);
    expect((await agent.request({ type: 'join_session', session_id: sessionId })).last_seq).toBe(0);
    expect(
      await customer.request({ type: 'send_message', session_id: sessionId, content: 'I want a refund', client_msg_id: 'e1' }),
    ).toMatchObject({
      type: 'message_ack',
      seq: 1,
    });
    expect((await agent.waitFor((frame) => frame.type === 'new_message')).message).toMatchObject({ seq: 1, content: 'I want a refund' });
    await agent.request({ type: 'send_message', session_id: sessionId, content: 'Done!', client_msg_id: 'e2' });
    expect(
      (await customer.waitFor((frame) => frame.type === 'new_message' && (frame.message as { seq: number }).seq === 2)).message,
    ).toMatchObject({
      content: 'Done!',
      sender_role: 'agent',
    });
    // A retry is stored once.
    expect(
      await customer.request({ type: 'send_message', session_id: sessionId, content: 'I want a refund', client_msg_id: 'e1' }),
    ).toMatchObject({ seq: 1 });
  });

  it('keeps users, keys and history across a restart', async () => {
    const before = (await post('/v1/token', { username: 'carla', password: 'carla-password' })).body.access_token as string;
    await clients.closeAll();
    expect(await system.stop()).toBe(0);
    system = await start();

    // A token issued before the restart still verifies: the signing key was kept.
    const customer = await client(before);
    const sessions = (await customer.request({ type: 'list_sessions' })).sessions as { id: number; last_seq: number }[];
    expect(sessions).toHaveLength(1);
    const [session] = sessions;
    expect(session?.last_seq).toBe(2);
    const history = await customer.request({ type: 'history', session_id: session?.id });
    expect((history.messages as { content: string }[]).map((message) => message.content)).toEqual(['I want a refund', 'Done!']);
    expect(await customer.request({ type: 'send_message', session_id: session?.id, content: 'Thanks', client_msg_id: 'e3' })).toMatchObject(
      { seq: 3 },
    );
  });

  it('tells the demo page where auth listens, and the frame size and rate its SDK must keep under', async () => {
    const config = (await (await fetch(`http://127.0.0.1:${system.port}/config.json`)).json()) as Record<string, unknown>;
    expect(config.authPort).toBe(Number(env.AUTH_PORT));
    expect(config).toMatchObject({ maxFrameBytes: 65_536, rateLimitPerSec: 20 });
  });

  it('prints the demo agent only with credentials that open it, and starts whatever becomes of it', async () => {
    // The admin's password changed since the first start: the demo agent exists and logs in on its
    // own, with no admin login, which failed (and counted against this address) at every start.
    await restart({ ADMIN_PASSWORD: 'changed-since-the-first-start' });
    expect(system.logs.join('\n')).toMatch(/demo agent: agent \/ agent-password/);
    expect(system.logs.some((line) => line.includes('the demo agent could not be set up'))).toBe(false);
    expect(await failedLogins()).toBe(0);

    // Another password for the same agent: the name is taken, and the banner prints no credentials
    // that fail (it printed `agent / not-its-password` before).
    await restart({ DEMO_AGENT_PASSWORD: 'not-its-password' });
    // The warning is logged before the banner, but through the logger's own stream: it may be read after it.
    await logged('the demo agent name is taken');
    expect(system.logs.join('\n')).not.toContain('demo agent: agent');
    // Found out without a login that fails: five such starts would have locked the agent out of loopback.
    expect(await failedLogins()).toBe(0);

    // A new demo agent while the admin cannot log in (its name refused to this address after too
    // many failed logins; a changed ADMIN_PASSWORD now replaces the admin's password at start): it
    // cannot be set up, and the chat runs all the same.
    for (let attempt = 0; attempt < 5; attempt++)
      expect((await post('/v1/token', { username: 'admin', password: 'not-the-admin-password' })).status).toBe(401);
    await restart({ DEMO_AGENT_USERNAME: 'agent2' });
    await logged('the demo agent could not be set up');
    expect(system.logs.join('\n')).not.toContain('demo agent: agent2');
    const token = (await post('/v1/token', { username: 'carla', password: 'carla-password' })).body.access_token as string;
    expect((await (await client(token)).request({ type: 'list_sessions' })).sessions).toHaveLength(1);

    await restart({ DEMO_AGENT_USERNAME: '' });
    expect(system.logs.join('\n')).not.toContain('demo agent');
  }, 120_000);

  it('closes the database when a start fails, and keeps the data for the next start', async () => {
    await clients.closeAll();
    expect(await system.stop()).toBe(0);
    // The gateway's port is taken: auth and persistence have started on the database by then.
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(Number(env.PORT), resolve));
    try {
      await expect(start()).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
    // Closed on the way out: its lock is gone.
    expect(existsSync(join(dataDir, 'postgres.lock'))).toBe(false);
    system = await start();
    const token = (await post('/v1/token', { username: 'carla', password: 'carla-password' })).body.access_token as string;
    const customer = await client(token);
    const [session] = (await customer.request({ type: 'list_sessions' })).sessions as { id: number }[];
    const history = await customer.request({ type: 'history', session_id: session?.id });
    expect((history.messages as { content: string }[]).map((message) => message.content)).toEqual(['I want a refund', 'Done!', 'Thanks']);
  });

  it('stops with 0 on a SIGTERM as soon as it is ready, while it may still be setting up the demo agent', async () => {
    await clients.closeAll();
    expect(await system.stop()).toBe(0);
    for (let attempt = 0; attempt < 3; attempt++) {
      // Ready on its probes: to the outside it runs, whatever it still does before its banner.
      system = await start();
      expect(await system.stop()).toBe(0);
      expect(system.logs.some((line) => line.includes('start-up was aborted'))).toBe(false);
    }
    system = await start();
  }, 120_000);
});

it("refuses a bad variable of a service's in one line, as that service does, before starting anything", async () => {
  const configDir = mkdtempSync(join(tmpdir(), 'switchboard-embedded-config-'));
  const refused = await startProcess('embedded-bad-config', 'apps/embedded/dist/main.js', {
    env: { ...(await embeddedEnv(configDir)), MAX_FRAME_BYTES: 'lots' },
    waitReady: false,
  });
  expect(await refused.exited).toBe(1);
  rmSync(configDir, { recursive: true, force: true });
  // Before: a fatal "failed to start" record with a stack trace, after the database was opened.
  const output = refused.logs.filter((line) => line.trim() !== '');
  expect(output).toEqual(['switchboard: invalid configuration:', expect.stringMatching(/^ {2}MAX_FRAME_BYTES: expected an integer/)]);
});
