/**
 * deploy/nats/auth.conf on a private nats-server: each service's NATS user can do its job and is
 * refused everything else, and a whole stack runs on those users alone, through a chat round trip
 * and `npm run status`, without a single permission violation.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, natsServerBinary, REPO_ROOT, type Stack, startStack, waitFor } from '@switchboard/testing';
import { AckPolicy, connect, type NatsConnection, RetentionPolicy, StorageType } from 'nats';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type NatsUser, passwordVariable, renderAuthConf, USERS } from '../../deploy/nats/permissions.mjs';
import { authenticate, sleep } from './helpers.js';

const STREAM = 'SWITCHBOARD_INBOUND';

let server: ChildProcess;
const serverLog: string[] = [];
let port: number;
let directory: string;
/** Passwords with characters that need percent-encoding in a URL, as real ones may have. */
const passwords = Object.fromEntries(USERS.map((user) => [user, `${user}:${randomBytes(9).toString('base64url')}/@`])) as Record<
  NatsUser,
  string
>;
/** By host name: nats.js cannot parse a server URL with user info and a host without a dot (see natsConnectOptions). */
const natsUrl = (user: NatsUser, password = passwords[user]) => `nats://${user}:${encodeURIComponent(password)}@localhost:${port}`;
const connections: NatsConnection[] = [];

interface Violation {
  operation: string;
  subject: string;
}

/** A connection as `user`, recording every permission violation the server reports to it. */
async function connectAs(user: NatsUser): Promise<{ nc: NatsConnection; violations: Violation[] }> {
  // Under the user's own inbox prefix, as the services connect (connectNatsBus's inboxPrefix).
  const nc = await connect({
    servers: `127.0.0.1:${port}`,
    user,
    pass: passwords[user],
    name: `test-${user}`,
    inboxPrefix: `_INBOX.${user}`,
  });
  connections.push(nc);
  const violations: Violation[] = [];
  void (async () => {
    for await (const status of nc.status()) {
      const context = (status as { permissionContext?: Violation }).permissionContext;
      if (status.type === 'error' && context) violations.push(context);
    }
  })();
  return { nc, violations };
}

/** Publishes and reports whether the server let it through (a refused publish is answered with a violation). */
async function canPublish({ nc, violations }: { nc: NatsConnection; violations: Violation[] }, subject: string): Promise<boolean> {
  nc.publish(subject, new Uint8Array([1]));
  await nc.flush();
  await sleep(20);
  return !violations.some((violation) => violation.operation === 'publish' && violation.subject === subject);
}

/** Subscribes and reports whether the server accepted the subscription. */
async function canSubscribe({ nc }: { nc: NatsConnection }, subject: string): Promise<boolean> {
  let refused = false;
  const subscription = nc.subscribe(subject, {
    callback: (error) => {
      if (error) refused = true;
    },
  });
  await nc.flush();
  await sleep(20);
  if (!refused) subscription.unsubscribe();
  return !refused;
}

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sb-nats-'));
  port = await freePort();
  // The checked-in file itself, included the way the comment at its top says.
  await copyFile(join(REPO_ROOT, 'deploy/nats/auth.conf'), join(directory, 'auth.conf'));
  await writeFile(join(directory, 'server.conf'), `listen: 127.0.0.1:${port}\ninclude ./auth.conf\n`);
  // Where the other tests look for it (NATS_SERVER_BIN, then /usr/sbin, /usr/bin, /usr/local/bin).
  const binary = natsServerBinary();
  if (!binary) throw new Error('no nats-server binary: set NATS_SERVER_BIN');
  server = spawn(binary, ['-js', '-sd', join(directory, 'jetstream'), '-c', join(directory, 'server.conf')], {
    env: { PATH: process.env.PATH, ...Object.fromEntries(USERS.map((user) => [passwordVariable(user), passwords[user]])) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const stream of [server.stdout, server.stderr])
    stream?.setEncoding('utf8').on('data', (chunk: string) => serverLog.push(...chunk.split('\n')));
  await waitFor(() => serverLog.some((line) => line.includes('Server is ready')), 10_000, `nats-server to start:\n${serverLog.join('\n')}`);
});

/** Closes the test's own connections, so that none of its stand-in responders answers the stack. */
async function closeConnections(): Promise<void> {
  await Promise.all(connections.splice(0).map((nc) => nc.close().catch(() => undefined)));
}

afterEach(closeConnections);

afterAll(async () => {
  await closeConnections();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await once(server, 'exit');
  }
  if (directory) await rm(directory, { recursive: true, force: true });
});

describe('deploy/nats/auth.conf', () => {
  it('is what deploy/nats/permissions.mjs generates', async () => {
    expect(await readFile(join(REPO_ROOT, 'deploy/nats/auth.conf'), 'utf8')).toBe(renderAuthConf());
  });

  it('refuses connections without the right password', async () => {
    await expect(connect({ servers: `127.0.0.1:${port}`, reconnect: false })).rejects.toThrow(/Authorization/i);
    await expect(connect({ servers: `127.0.0.1:${port}`, user: 'gateway', pass: 'wrong', reconnect: false })).rejects.toThrow(
      /Authorization/i,
    );
    await expect(connect({ servers: `127.0.0.1:${port}`, user: 'gateway', pass: passwords.persistence, reconnect: false })).rejects.toThrow(
      /Authorization/i,
    );
  });
});

describe('each user does its job', () => {
  it('lets persistence ensure the inbound stream, gateways publish to it, and persistence consume, ack and confirm', async () => {
    const persistence = await connectAs('persistence');
    const gateway = await connectAs('gateway');
    const jsm = await persistence.nc.jetstreamManager();
    await jsm.streams.add({
      name: STREAM,
      subjects: ['switchboard.inbound.>'],
      storage: StorageType.File,
      retention: RetentionPolicy.Workqueue,
    });
    await jsm.streams.update(STREAM, { subjects: ['switchboard.inbound.>'] });
    await jsm.consumers.add(STREAM, {
      durable_name: 'persistence',
      ack_policy: AckPolicy.Explicit,
      filter_subject: 'switchboard.inbound.>',
    });

    const confirmed: string[] = [];
    gateway.nc.subscribe('switchboard.confirmed.>', { callback: (_error, msg) => confirmed.push(msg.subject) });
    await gateway.nc.flush();
    const ack = await gateway.nc.jetstream().publish('switchboard.inbound.42', new TextEncoder().encode('{"hello":1}'), { msgID: 'm-1' });
    expect(ack.stream).toBe(STREAM);

    const consumer = await persistence.nc.jetstream().consumers.get(STREAM, 'persistence');
    const message = await consumer.next({ expires: 5_000 });
    expect(message?.subject).toBe('switchboard.inbound.42');
    message?.working();
    expect(await message?.ackAck()).toBe(true);
    persistence.nc.publish('switchboard.confirmed.42', new TextEncoder().encode('{}'));
    await waitFor(() => confirmed.includes('switchboard.confirmed.42'), 5_000, 'the confirmed message');
    expect((await jsm.streams.info(STREAM)).state.messages).toBe(0);
    expect([...persistence.violations, ...gateway.violations]).toEqual([]);
  });

  it('lets gateways request persistence and the keys, with only persistence and auth answering them', async () => {
    const [persistence, auth, gateway] = await Promise.all([connectAs('persistence'), connectAs('auth'), connectAs('gateway')]);
    persistence.nc.subscribe('switchboard.persistence.>', {
      queue: 'q',
      callback: (_error, msg) => msg.respond(new TextEncoder().encode('stored')),
    });
    auth.nc.subscribe('switchboard.auth.jwks', { queue: 'q', callback: (_error, msg) => msg.respond(new TextEncoder().encode('keys')) });
    await Promise.all([persistence.nc.flush(), auth.nc.flush()]);
    expect(
      new TextDecoder().decode((await gateway.nc.request('switchboard.persistence.messages.history', undefined, { timeout: 2_000 })).data),
    ).toBe('stored');
    expect(new TextDecoder().decode((await gateway.nc.request('switchboard.auth.jwks', undefined, { timeout: 2_000 })).data)).toBe('keys');
    expect([...persistence.violations, ...auth.violations, ...gateway.violations]).toEqual([]);
  });

  it("lets auth announce a user's revoked tokens to the gateways", async () => {
    const [auth, gateway] = await Promise.all([connectAs('auth'), connectAs('gateway')]);
    const heard: string[] = [];
    gateway.nc.subscribe('switchboard.auth.revoked', { callback: (_error, msg) => heard.push(new TextDecoder().decode(msg.data)) });
    await gateway.nc.flush();
    auth.nc.publish('switchboard.auth.revoked', new TextEncoder().encode('{"user_id":7,"issued_until_ms":1}'));
    await waitFor(() => heard.length === 1, 5_000, 'the revocation');
    expect([...auth.violations, ...gateway.violations]).toEqual([]);
  });
});

describe('each user is refused outside its lists', () => {
  const refusals: Record<NatsUser, { publish: string[]; subscribe: string[] }> = {
    gateway: {
      publish: [
        'switchboard.confirmed.42',
        'switchboard.dead',
        // A forged revocation would cut any user off.
        'switchboard.auth.revoked',
        `$JS.API.STREAM.DELETE.${STREAM}`,
        `$JS.API.STREAM.PURGE.${STREAM}`,
        `$JS.API.CONSUMER.MSG.NEXT.${STREAM}.persistence`,
        `$JS.API.CONSUMER.CREATE.${STREAM}.spy`,
        '$JS.API.STREAM.CREATE.OTHER',
        'switchboard.other',
      ],
      subscribe: [
        'switchboard.inbound.>',
        'switchboard.persistence.>',
        'switchboard.auth.jwks',
        '>',
        '$JS.API.>',
        '$SRV.*.switchboard-persistence',
        // Other processes' replies: message history from persistence, keys, PubAcks.
        '_INBOX.>',
        '_INBOX.persistence.>',
        '_INBOX.auth.x',
      ],
    },
    persistence: {
      publish: [
        'switchboard.inbound.42',
        'switchboard.auth.jwks',
        'switchboard.auth.revoked',
        'switchboard.persistence.sessions.get',
        `$JS.API.STREAM.DELETE.${STREAM}`,
        `$JS.API.STREAM.PURGE.${STREAM}`,
        `$JS.API.CONSUMER.DELETE.${STREAM}.persistence`,
        '$JS.API.STREAM.CREATE.OTHER',
      ],
      subscribe: ['switchboard.auth.jwks', 'switchboard.confirmed.>', 'switchboard.inbound.>', '>', '_INBOX.>', '_INBOX.gateway.>'],
    },
    auth: {
      publish: [
        'switchboard.inbound.42',
        'switchboard.confirmed.42',
        'switchboard.persistence.sessions.get',
        `$JS.API.STREAM.DELETE.${STREAM}`,
      ],
      subscribe: ['switchboard.persistence.>', 'switchboard.confirmed.>', 'switchboard.inbound.>', '>', '_INBOX.>', '_INBOX.gateway.>'],
    },
    status: {
      publish: [
        'switchboard.inbound.42',
        'switchboard.confirmed.42',
        'switchboard.persistence.messages.history',
        'switchboard.auth.jwks',
        'switchboard.auth.revoked',
        '$JS.API.INFO',
      ],
      subscribe: ['switchboard.confirmed.>', '$SRV.>', '>', '_INBOX.>', '_INBOX.persistence.>'],
    },
  };

  it.each(USERS)('refuses %s', async (user) => {
    const connection = await connectAs(user);
    for (const subject of refusals[user].publish)
      expect(await canPublish(connection, subject), `${user} publishing ${subject}`).toBe(false);
    for (const subject of refusals[user].subscribe)
      expect(await canSubscribe(connection, subject), `${user} subscribing ${subject}`).toBe(false);
    // The connection survives its refusals, and what is allowed still works.
    const allowed = {
      auth: 'switchboard.auth.jwks',
      persistence: 'switchboard.persistence.>',
      gateway: 'switchboard.confirmed.>',
      status: '_INBOX.status.x',
    }[user];
    expect(await canSubscribe(connection, allowed)).toBe(true);
    expect(connection.nc.isClosed()).toBe(false);
  });

  it('delivered none of the refused publishes', async () => {
    const gateway = await connectAs('gateway');
    const seen: string[] = [];
    gateway.nc.subscribe('switchboard.confirmed.>', { callback: (_error, msg) => seen.push(msg.subject) });
    await gateway.nc.flush();
    expect(await canPublish(gateway, 'switchboard.confirmed.7')).toBe(false);
    const auth = await connectAs('auth');
    expect(await canPublish(auth, 'switchboard.confirmed.7')).toBe(false);
    await sleep(100);
    expect(seen).toEqual([]);
    // Persistence publishing to the inbound stream would have left a message in it.
    const persistence = await connectAs('persistence');
    const before = (await (await persistence.nc.jetstreamManager()).streams.info(STREAM)).state.messages;
    expect(await canPublish(persistence, 'switchboard.inbound.7')).toBe(false);
    expect((await (await persistence.nc.jetstreamManager()).streams.info(STREAM)).state.messages).toBe(before);
    // The server logs each violation: the stack below is checked against that log.
    expect(serverLog.some((line) => /Publish Violation .*switchboard\.inbound\.7/.test(line))).toBe(true);
  });
});

describe('a whole stack on these users', () => {
  let stack: Stack | undefined;

  afterAll(async () => {
    await stack?.stop();
  });

  it('carries a chat round trip and answers npm run status, with no permission violation anywhere', async () => {
    // Only what the stack does from here on counts.
    serverLog.length = 0;
    stack = await startStack({
      gateways: 2,
      env: { NATS_URL: natsUrl('auth'), NATS_SUBJECT_PREFIX: 'switchboard' },
      persistenceEnv: { NATS_URL: natsUrl('persistence') },
      gatewayEnv: { NATS_URL: natsUrl('gateway') },
    });
    const [customerUser, agentUser] = await Promise.all([stack.user('user'), stack.user('agent')]);
    const customer = (await authenticate(stack.wsUrl(0), customerUser.token)).client;
    const agent = (await authenticate(stack.wsUrl(1), agentUser.token)).client;
    const session = ((await customer.request({ type: 'create_session', subject: 'least privilege' })).session as { id: number }).id;
    expect((await customer.request({ type: 'join_session', session_id: session })).type).toBe('joined_session');
    expect((await agent.request({ type: 'join_session', session_id: session })).type).toBe('joined_session');
    expect(await customer.request({ type: 'send_message', session_id: session, content: 'hello?', client_msg_id: 'c1' })).toMatchObject({
      type: 'message_ack',
      seq: 1,
    });
    expect((await agent.waitFor((frame) => frame.type === 'new_message')).message).toMatchObject({ content: 'hello?', seq: 1 });
    expect(await agent.request({ type: 'send_message', session_id: session, content: 'hi!', client_msg_id: 'a1' })).toMatchObject({
      seq: 2,
    });
    await customer.waitForCount((frame) => frame.type === 'new_message', 2);
    expect((await agent.request({ type: 'history', session_id: session })).messages).toHaveLength(2);
    // The agent's account disabled: auth announces it, and the gateway closes its socket.
    const admin = await stack.user('admin');
    const disabled = await fetch(stack.auth.url(`/v1/users/${agentUser.id}`), {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${admin.token}` },
      body: JSON.stringify({ disabled: true }),
    });
    expect(disabled.status).toBe(200);
    expect(await agent.closed).toBe(4001);
    await customer.close();

    const { stdout } = await promisify(execFile)(process.execPath, ['apps/status/dist/main.js', '--json'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH, NATS_URL: natsUrl('status'), NATS_SUBJECT_PREFIX: 'switchboard' },
    });
    const rows = JSON.parse(stdout) as { service: string }[];
    expect(rows.map((row) => row.service).sort()).toEqual(['auth', 'gateway', 'gateway', 'persistence']);

    const services = [stack.auth, ...stack.persistence, ...stack.gateways];
    expect(serverLog.filter((line) => /violation/i.test(line))).toEqual([]);
    expect(services.flatMap((service) => service.logs).filter((line) => line.includes('"NATS error"'))).toEqual([]);
    // The passwords travelled in NATS_URL: no process may have written them anywhere.
    for (const service of services) for (const user of USERS) expect(service.logs.join('\n')).not.toContain(passwords[user]);
  });
});
