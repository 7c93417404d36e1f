import { randomBytes } from 'node:crypto';
import { CloseCode } from '@switchboard/protocol';
import { passwordOf, postJson, type Stack, startStack, TestClients } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * An admin disabling an account, or changing its role or password, revokes its tokens: the
 * account's token version goes up, auth announces it on the bus, and every gateway closes the
 * sockets whose token is of an older version (4001) and refuses such tokens from then on. Before,
 * they chatted on until the tokens expired (an hour by default).
 */

let stack: Stack;
let adminToken: string;
const clients = new TestClients();

const API_KEY = randomBytes(16).toString('hex');

beforeAll(async () => {
  stack = await startStack({ gateways: 2, env: { AUTH_API_KEYS: API_KEY } });
  adminToken = (await stack.user('admin')).token;
});

afterAll(async () => {
  await clients.closeAll();
  await stack?.stop();
});

async function changeAccount(id: number, changes: Record<string, unknown>): Promise<void> {
  const response = await fetch(stack.auth.url(`/v1/users/${id}`), {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify(changes),
  });
  expect(response.status).toBe(200);
}

const REVOKED = { type: 'error', code: 'auth_failed', message: 'token revoked; sign in again' };

describe('revoked tokens', () => {
  it("closes every socket of a disabled account, on every gateway, refuses its token from then on, and leaves others' alone", async () => {
    const [agent, colleague] = await Promise.all([stack.user('agent'), stack.user('agent')]);
    const onFirst = await clients.authenticated(stack.wsUrl(0), agent.token);
    const onSecond = await clients.authenticated(stack.wsUrl(1), agent.token);
    const bystander = await clients.authenticated(stack.wsUrl(0), colleague.token);

    await changeAccount(agent.id, { disabled: true });
    expect(await onFirst.closed).toBe(CloseCode.AuthFailed);
    expect(await onSecond.closed).toBe(CloseCode.AuthFailed);
    expect(onFirst.closeReason).toBe('token revoked');
    expect(onFirst.frames.at(-1)).toMatchObject(REVOKED);

    const again = await clients.connect(stack.wsUrl(1));
    expect(await again.request({ type: 'auth', token: agent.token })).toMatchObject(REVOKED);
    expect(await again.closed).toBe(CloseCode.AuthFailed);

    expect(bystander.closeCode).toBeUndefined();
    expect(await bystander.request({ type: 'list_sessions' })).toMatchObject({ type: 'sessions' });
  });

  it('lets an account whose role changed sign in again at once, in its new role, and refuses the old token', async () => {
    const agent = await stack.user('agent');
    const socket = await clients.authenticated(stack.wsUrl(0), agent.token);

    await changeAccount(agent.id, { role: 'admin' });
    expect(await socket.closed).toBe(CloseCode.AuthFailed);
    // Got within milliseconds of the revocation, at the new version: accepted.
    const { access_token: token } = await postJson(stack.auth.url('/v1/token'), {
      username: agent.username,
      password: passwordOf(agent.username),
    });
    const renewed = await clients.authenticated(stack.wsUrl(1), token as string);
    expect(renewed.frames.at(-1)).toMatchObject({ type: 'auth_success', user: { id: agent.id, role: 'admin' } });
    const old = await clients.connect(stack.wsUrl(1));
    expect(await old.request({ type: 'auth', token: agent.token })).toMatchObject(REVOKED);
  });

  it('revokes on a new password, but not on a new display name or the role the account already has', async () => {
    const [customer, agent, witness] = await Promise.all([stack.user('user'), stack.user('agent'), stack.user('agent')]);
    const customerSocket = await clients.authenticated(stack.wsUrl(0), customer.token);
    const agentSocket = await clients.authenticated(stack.wsUrl(0), agent.token);
    const witnessSocket = await clients.authenticated(stack.wsUrl(0), witness.token);
    await changeAccount(customer.id, { display_name: 'Alice' });
    await changeAccount(agent.id, { role: 'agent' });
    // A revocation sent after those changes, closing its socket on the same gateway: whatever
    // they would have announced has arrived by then.
    await changeAccount(witness.id, { disabled: true });
    expect(await witnessSocket.closed).toBe(CloseCode.AuthFailed);
    expect(customerSocket.closeCode).toBeUndefined();
    expect(agentSocket.closeCode).toBeUndefined();

    await changeAccount(customer.id, { password: 'a-new-password-for-alice' });
    expect(await customerSocket.closed).toBe(CloseCode.AuthFailed);
  });

  it('revokes the tokens of a service user whose backend gives it another role, and not when the role stays', async () => {
    const serviceToken = async (role: string) =>
      (await postJson(stack.auth.url('/v1/service-token'), { external_id: 'crm-revoked', role }, API_KEY)).access_token as string;
    const asAgent = await serviceToken('agent');
    const socket = await clients.authenticated(stack.wsUrl(0), asAgent);
    // The same role again: a fresh token, and the socket stays (a third account's revocation,
    // waited for, shows that anything announced before it has arrived).
    const sameRole = await clients.authenticated(stack.wsUrl(0), await serviceToken('agent'));
    const witness = await stack.user('agent');
    const witnessSocket = await clients.authenticated(stack.wsUrl(0), witness.token);
    await changeAccount(witness.id, { disabled: true });
    expect(await witnessSocket.closed).toBe(CloseCode.AuthFailed);
    expect(socket.closeCode).toBeUndefined();

    // Now a customer: the agent's sockets are closed, and its token refused (before: both kept).
    const asCustomer = await serviceToken('user');
    expect(await socket.closed).toBe(CloseCode.AuthFailed);
    expect(await sameRole.closed).toBe(CloseCode.AuthFailed);
    const old = await clients.connect(stack.wsUrl(1));
    expect(await old.request({ type: 'auth', token: asAgent })).toMatchObject(REVOKED);
    expect((await clients.authenticated(stack.wsUrl(1), asCustomer)).frames.at(-1)).toMatchObject({
      type: 'auth_success',
      user: { role: 'user' },
    });
  });

  it("refuses an admin's token in the auth API once another admin has given that admin a new password, not a new name", async () => {
    const [leaked, other] = await Promise.all([stack.user('admin'), stack.user('admin')]);
    let agents = 0;
    const createAgent = (token: string) =>
      fetch(stack.auth.url('/v1/users'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ username: `agent-of-${leaked.username}-${++agents}`, password: 'an-agent-password', role: 'agent' }),
      });
    expect((await createAgent(leaked.token)).status).toBe(201);
    // A new display name leaves the token version, and so the token, as it was.
    await changeAccount(leaked.id, { display_name: 'Night shift lead' });
    expect((await createAgent(leaked.token)).status).toBe(201);
    const response = await fetch(stack.auth.url(`/v1/users/${leaked.id}`), {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${other.token}` },
      body: JSON.stringify({ password: 'a-new-admin-password' }),
    });
    expect(response.status).toBe(200);
    // Before: the leaked token still created staff until it expired.
    expect((await createAgent(leaked.token)).status).toBe(403);
  });
});
