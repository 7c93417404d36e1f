import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@switchboard/logging';
import { createSubjects } from '@switchboard/protocol';
import { NatsServer, TEST_NATS_URL, waitFor } from '@switchboard/testing';
import { connect } from 'nats';
import { afterEach, describe, expect, it } from 'vitest';
import type { Bus } from './bus.js';
import { connectNatsBus, createNatsBus, natsConnectOptions } from './nats-bus.js';

const logger = createLogger({ name: 'closed-test', level: 'silent' });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A nats-server of the test's own, with JetStream and one user, that can be restarted with another password. */
class PasswordNats {
  private constructor(private readonly server: NatsServer) {}

  static async start(password: string): Promise<PasswordNats> {
    return new PasswordNats(await NatsServer.start(await mkdtemp(join(tmpdir(), 'nats-closed-')), PasswordNats.args(password)));
  }

  private static args(password: string): string[] {
    return ['--user', 'switchboard', '--pass', password];
  }

  url(password: string): string {
    return `nats://switchboard:${password}@127.0.0.1:${this.server.port}`;
  }

  async restart(password: string): Promise<void> {
    await this.server.kill();
    await this.server.restart(PasswordNats.args(password));
  }

  remove(): Promise<void> {
    return this.server.remove();
  }
}

describe('the NATS bus when its connection is refused or closed', () => {
  let bus: Bus | undefined;
  let server: PasswordNats | undefined;
  afterEach(async () => {
    await bus?.close();
    bus = undefined;
    await server?.remove();
    server = undefined;
  });

  it('reconnects once the server takes its password again, after refusing it on several reconnects in a row', async () => {
    server = await PasswordNats.start('right');
    const closes: unknown[] = [];
    bus = await connectNatsBus({
      servers: [server.url('right')],
      name: 'closed-test',
      subjects: createSubjects('closedtest'),
      logger,
      onClosed: (error) => closes.push(error ?? 'no error'),
    });
    expect(bus.isConnected()).toBe(true);

    // A rotation of the credentials that reaches the server before the client: every reconnect
    // in these 2 s (one every 500–750 ms) is refused with the same authorization error.
    await server.restart('rotated');
    await waitFor(() => !bus?.isConnected(), 5_000, 'the bus to notice the restart');
    await sleep(2_000);
    await server.restart('right');

    await waitFor(() => bus?.isConnected() === true, 10_000, 'the bus to reconnect');
    expect(closes).toEqual([]);
  }, 40_000);

  it('calls onClosed when the connection closes for good other than through close(), and not for close()', async () => {
    const closes: unknown[] = [];
    const onClosed = (error: Error | undefined) => closes.push(error ?? 'no error');
    const options = { subjects: createSubjects('closedtest'), logger, onClosed };

    // The client closes its connection by itself: since nothing will reopen it, the owner must learn of it.
    const nc = await connect({ servers: TEST_NATS_URL });
    bus = await createNatsBus(nc, options);
    await nc.close();
    await waitFor(() => closes.length > 0, 5_000, 'onClosed');
    expect(closes).toEqual(['no error']);
    expect(bus.isConnected()).toBe(false);

    const other = await createNatsBus(await connect({ servers: TEST_NATS_URL }), options);
    await other.close();
    await sleep(200);
    expect(closes).toEqual(['no error']);
  });
});

describe('a subscription the server refuses', () => {
  it('calls onClosed, since nats.js closes it for good and never subscribes it again', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'nats-refused-'));
    const conf = join(directory, 'nats.conf');
    // A user who may subscribe to anything but forbidden.>, as a permissions file half rolled out.
    await writeFile(
      conf,
      'authorization { users = [ { user: "switchboard", password: "secret", permissions: { publish: ">", subscribe: { allow: ">", deny: ["forbidden.>", "_INBOX.denied.>", "_INBOX.pulls.*"] } } } ] }\n',
    );
    const server = await NatsServer.start(join(directory, 'store'), ['-c', conf]);
    /** A bus as that user, and what its `onClosed` was told. */
    const connectAsUser = async (name: string, options: { prefix?: string; inboxPrefix?: string } = {}) => {
      const closes: unknown[] = [];
      const bus = await connectNatsBus({
        servers: [`nats://switchboard:secret@127.0.0.1:${server.port}`],
        name,
        subjects: createSubjects(options.prefix ?? 'refusedtest'),
        logger,
        ...(options.inboxPrefix ? { inboxPrefix: options.inboxPrefix } : {}),
        onClosed: (error) => closes.push(error?.message),
      });
      return { bus, closes };
    };
    const { bus: refused, closes } = await connectAsUser('refused-test');
    try {
      await refused.subscribe('allowed.x', () => undefined);
      await sleep(200);
      expect(closes).toEqual([]);

      // Before, the subscribe succeeded (its flush came back after the refusal), and the
      // subscription was gone for good with nobody told: readiness 200, nothing delivered.
      await refused.subscribe('forbidden.x', () => undefined).catch(() => undefined);
      await waitFor(() => closes.length > 0, 5_000, 'onClosed');
      expect(closes).toEqual([expect.stringContaining('forbidden.x')]);

      // One the service can go without is logged, and the connection goes on (before: onClosed).
      const optional = await connectAsUser('refused-optional-test');
      await optional.bus.subscribe('forbidden.optional', () => undefined, { optional: true });
      await sleep(300);
      expect(optional.closes).toEqual([]);
      expect(optional.bus.isConnected()).toBe(true);
      await optional.bus.close();

      // Its PubAck inbox refused, a gateway would time out every send, each stored all the same.
      const publisher = await connectAsUser('refused-inbox-test', { inboxPrefix: '_INBOX.denied' });
      await waitFor(() => publisher.closes.length > 0, 5_000, 'onClosed for the PubAck inbox');
      expect(publisher.closes).toEqual([expect.stringContaining('_INBOX.denied.')]);
      await publisher.bus.close();

      // A pull's inbox (`_INBOX.pulls.<id>`, where requests and PubAcks use `_INBOX.pulls.<id>.*`)
      // refused: the pull fails and is pulled again, with a new inbox, and nothing is closed.
      const puller = await connectAsUser('refused-pull-test', { prefix: 'refusedpulls', inboxPrefix: '_INBOX.pulls' });
      await puller.bus.ensureInboundStream({
        ackWaitMs: 30_000,
        maxDeliver: 20,
        duplicateWindowMs: 120_000,
        maxAgeMs: 3_600_000,
        replicas: 1,
      });
      const consumer = await puller.bus.inboundConsumer();
      for await (const _ of consumer.fetch({ maxMessages: 1, expiresMs: 1_000 })) break;
      await sleep(300);
      expect(puller.closes).toEqual([]);
      await puller.bus.close();
    } finally {
      await refused.close();
      await server.remove();
    }
  });
});

describe('a tls:// server URL', () => {
  it('refuses a server that offers no TLS, rather than sending the credentials in the clear', async () => {
    // nats.js drops the scheme: without the tls option it connected to the plain server below.
    const options = natsConnectOptions([`tls://switchboard:secret@${new URL(TEST_NATS_URL).host}`]);
    await expect(connect({ ...options, maxReconnectAttempts: 0, reconnect: false })).rejects.toThrow(/tls/i);
  });
});
