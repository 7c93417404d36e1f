import { query, type ServiceProcess } from '@switchboard/testing';
import { describe, expect, it } from 'vitest';
import { authPerTest } from './auth-per-test.js';

/** ADMIN_USERNAME and ADMIN_PASSWORD: the admin created at start, when no account has the name. */
const auth = authPerTest('auth_bootstrap');
const startAuth = (env: Record<string, string> = {}) => auth.start(env);

const requestToken = (service: ServiceProcess, username: string, password: string) =>
  fetch(service.url('/v1/token'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });

async function login(service: ServiceProcess, username: string, password: string): Promise<{ status: number; role?: string }> {
  const response = await requestToken(service, username, password);
  const body = (await response.json()) as { user?: { role: string } };
  return { status: response.status, role: body.user?.role };
}

async function tokenOf(service: ServiceProcess, username: string, password: string): Promise<string> {
  return ((await (await requestToken(service, username, password)).json()) as { access_token: string }).access_token;
}

describe('the bootstrap admin', () => {
  it('is created once, and kept across restarts', async () => {
    const admin = { ADMIN_USERNAME: 'first-admin', ADMIN_PASSWORD: 'correct horse battery staple' };
    const first = await startAuth(admin);
    expect(await login(first, 'first-admin', admin.ADMIN_PASSWORD)).toEqual({ status: 200, role: 'admin' });
    expect(await first.stop()).toBe(0);
    const again = await startAuth(admin);
    expect(await login(again, 'first-admin', admin.ADMIN_PASSWORD)).toEqual({ status: 200, role: 'admin' });
  });

  it('takes a changed ADMIN_PASSWORD at the next start: the old password no longer logs in, nor do its tokens administer', async () => {
    const first = await startAuth({ ADMIN_USERNAME: 'rotated-admin', ADMIN_PASSWORD: 'the example password' });
    expect(await login(first, 'rotated-admin', 'the example password')).toEqual({ status: 200, role: 'admin' });
    const leaked = await tokenOf(first, 'rotated-admin', 'the example password');
    expect(await first.stop()).toBe(0);

    const rotated = await startAuth({ ADMIN_USERNAME: 'rotated-admin', ADMIN_PASSWORD: 'a password only the operator knows' });
    expect(await login(rotated, 'rotated-admin', 'a password only the operator knows')).toEqual({ status: 200, role: 'admin' });
    expect((await login(rotated, 'rotated-admin', 'the example password')).status).toBe(401);
    expect(rotated.logs.join('\n')).toMatch(/bootstrap admin password replaced by ADMIN_PASSWORD/);
    // Before: the token got with the leaked password still created staff until it expired.
    const created = await fetch(rotated.url('/v1/users'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${leaked}` },
      body: JSON.stringify({ username: 'an-agent-of-the-leak', password: 'an agent password', role: 'agent' }),
    });
    expect(created.status).toBe(403);
  });

  it('is enabled again at start when it was disabled in the database: the way back in', async () => {
    const admin = { ADMIN_USERNAME: 'locked-out-admin', ADMIN_PASSWORD: 'correct horse battery staple' };
    const first = await startAuth(admin);
    expect(await first.stop()).toBe(0);
    await query(auth.databaseUrl, "update users set disabled_at = now() where username = 'locked-out-admin'");
    const again = await startAuth(admin);
    expect(await login(again, 'locked-out-admin', admin.ADMIN_PASSWORD)).toEqual({ status: 200, role: 'admin' });
    expect(again.logs.join('\n')).toMatch(/bootstrap admin enabled again/);
  });

  it('refuses to start when a customer has signed up with its name first', async () => {
    const open = await startAuth();
    const signedUp = await fetch(open.url('/v1/users'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'Support-Admin', password: 'a customer password' }),
    });
    expect(signedUp.status).toBe(201);
    expect(await open.stop()).toBe(0);

    await expect(startAuth({ ADMIN_USERNAME: 'support-admin', ADMIN_PASSWORD: 'the operator password' })).rejects.toThrow(
      /exited before it was ready[\s\S]*ADMIN_USERNAME support-admin is taken by an account with the role user/,
    );
    // The customer's account is untouched.
    const back = await startAuth();
    expect(await login(back, 'support-admin', 'a customer password')).toEqual({ status: 200, role: 'user' });
  });
});
