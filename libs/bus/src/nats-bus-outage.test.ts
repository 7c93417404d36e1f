import { connect, createServer, type Server, type Socket } from 'node:net';
import { createLogger } from '@switchboard/logging';
import { BusErrorCode, createSubjects } from '@switchboard/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { type Bus, BusError } from './bus.js';
import { connectNatsBus } from './nats-bus.js';

const NATS = new URL(process.env.NATS_URL ?? 'nats://127.0.0.1:4222');

/** A TCP proxy to the real NATS that can stop passing the client's bytes on, then cut the connection. */
async function startProxy() {
  const sockets = new Set<Socket>();
  let frozen = false;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(NATS.port), NATS.hostname);
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => {
      if (!frozen) upstream.write(chunk);
    });
    upstream.pipe(client);
    for (const socket of [client, upstream]) socket.on('error', () => undefined).on('close', () => client.destroy() && upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    url: `nats://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    freeze: () => {
      frozen = true;
    },
    cut: () => {
      server.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}

describe('the NATS bus when the connection drops', () => {
  let bus: Bus | undefined;
  afterEach(async () => {
    await bus?.close();
  });

  it('fails a subscribe still waiting for the server with `unavailable`', async () => {
    const proxy = await startProxy();
    bus = await connectNatsBus({
      servers: [proxy.url],
      name: 'outage-test',
      subjects: createSubjects('outage'),
      logger: createLogger({ name: 'outage-test', level: 'silent' }),
    });
    proxy.freeze(); // the subscription and its flush never reach the server
    const subscribing = bus.subscribe('outage.confirmed.1', () => undefined);
    setTimeout(proxy.cut, 100);
    const error = await subscribing.then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(BusError);
    expect((error as BusError).code).toBe(BusErrorCode.Unavailable);
  });
});
