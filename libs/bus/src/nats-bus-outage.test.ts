import { createLogger } from '@switchboard/logging';
import { BusErrorCode, createSubjects } from '@switchboard/protocol';
import { settlesWithin } from '@switchboard/runtime';
import { TcpProxy, TEST_NATS_URL } from '@switchboard/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Bus, BusError } from './bus.js';
import { connectNatsBus } from './nats-bus.js';

const NATS = new URL(TEST_NATS_URL);

/** A bus connected to the machine's NATS through a proxy the test can break. */
async function connectThroughProxy(): Promise<{ proxy: TcpProxy; bus: Bus }> {
  const proxy = await TcpProxy.start({ host: NATS.hostname, port: Number(NATS.port || 4222) });
  const bus = await connectNatsBus({
    servers: [proxy.url(NATS.toString())],
    name: 'outage-test',
    subjects: createSubjects('outage'),
    logger: createLogger({ name: 'outage-test', level: 'silent' }),
  });
  return { proxy, bus };
}

describe('the NATS bus when the connection drops', () => {
  let bus: Bus | undefined;
  let proxy: TcpProxy | undefined;
  afterEach(async () => {
    await bus?.close();
    await proxy?.close();
  });

  it('fails a subscribe still waiting for the server with `unavailable`', async () => {
    ({ proxy, bus } = await connectThroughProxy());
    proxy.partition(); // the subscription and its flush never reach the server
    const subscribing = bus.subscribe('outage.confirmed.1', () => undefined);
    const cuttable = proxy;
    setTimeout(() => cuttable.cut(), 100); // the connection drops; reconnecting is refused
    const error = await subscribing.then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(BusError);
    expect((error as BusError).code).toBe(BusErrorCode.Unavailable);
  });

  it("keeps the server's max_payload while it reconnects", async () => {
    const { proxy: cuttable, bus: connected } = await connectThroughProxy();
    proxy = cuttable;
    bus = connected;
    const known = connected.maxPayload();
    expect(Number.isFinite(known)).toBe(true);
    cuttable.cut(); // the connection drops; each dial again is refused
    await vi.waitFor(() => expect(connected.isConnected()).toBe(false), { timeout: 5_000 });
    // nats.js forgets the server's INFO at each dial; before, the limit read as none meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(connected.maxPayload()).toBe(known);
  });

  it('closes within its drain bound while its dials go into a black hole', async () => {
    const { proxy: blackholed, bus: connected } = await connectThroughProxy();
    proxy = blackholed;
    await connected.subscribe('outage.confirmed.2', () => undefined);
    blackholed.blackhole();
    blackholed.reset(); // the connection drops; the dial again is taken and never answered
    await vi.waitFor(() => expect(connected.isConnected()).toBe(false), { timeout: 5_000 });
    // Before, the drain's flush waited for the next dial, 20 s on: past a stop's 30 s with the rest.
    expect(await settlesWithin(connected.close(), 4_500)).toBe(true);
  }, 20_000);

  it('fails a subscribe with `unavailable` within a dial while its dials go into a black hole', async () => {
    let blackholed: TcpProxy;
    ({ proxy: blackholed, bus } = await connectThroughProxy());
    proxy = blackholed;
    const connected = bus;
    blackholed.blackhole();
    blackholed.reset(); // the connection drops; the dial again is taken and never answered
    await vi.waitFor(() => expect(connected.isConnected()).toBe(false), { timeout: 5_000 });
    // Past the pause before the next dial (500 ms and up to 250 ms of jitter): one is under way.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const subscribing = connected
      .subscribe('outage.confirmed.3', () => undefined)
      .then(
        () => undefined,
        (caught: unknown) => caught,
      );
    // Before, its flush waited for the next dial, 20 s on: past a join's 10 s deadline.
    expect(await settlesWithin(subscribing, 12_000)).toBe(true);
    const error = await subscribing;
    expect(error).toBeInstanceOf(BusError);
    expect((error as BusError).code).toBe(BusErrorCode.Unavailable);
  }, 30_000);

  it('stops a service within its drain bound while the connection passes nothing', async () => {
    let silenced: TcpProxy;
    ({ proxy: silenced, bus } = await connectThroughProxy());
    proxy = silenced;
    const service = await bus.addService({
      name: 'outage-test',
      version: '0.0.1',
      description: 'an endpoint to stop',
      endpoints: [{ name: 'echo', subject: 'outage.echo', handler: async (data) => data }],
    });
    silenced.partition(); // open, but passing nothing: the client's pings have not found it out yet
    // Before, its drain waited for the server's answer until the pings gave up, 20 s and more.
    expect(await settlesWithin(service.stop(), 4_000)).toBe(true);
  }, 20_000);

  it('goes on after a reconnect listener throws: the other listeners run, and readiness follows the connection', async () => {
    let broken: TcpProxy;
    ({ proxy: broken, bus } = await connectThroughProxy());
    proxy = broken;
    const connected = bus;
    const heard: number[] = [];
    connected.onReconnect(() => {
      throw new Error('a listener that throws');
    });
    connected.onReconnect(() => heard.push(heard.length + 1));
    for (const round of [1, 2]) {
      broken.cut();
      await vi.waitFor(() => expect(connected.isConnected()).toBe(false), { timeout: 5_000 });
      broken.restore();
      // Before: the first throw ended the loop that follows the connection (and, uncaught, the
      // process): the second listener never ran, and the second drop was never seen.
      await vi.waitFor(() => expect(connected.isConnected()).toBe(true), { timeout: 10_000 });
      expect(heard).toHaveLength(round);
    }
  }, 40_000);

  it('fails a subscribe on a bus that is closing with `unavailable`, as any other', async () => {
    ({ proxy, bus } = await connectThroughProxy());
    const closing = bus.close();
    // Before: nats.js's own CONNECTION_DRAINING error, thrown as it is.
    const error = await bus
      .subscribe('outage.confirmed.4', () => undefined)
      .then(
        () => undefined,
        (caught: unknown) => caught,
      );
    expect(error).toBeInstanceOf(BusError);
    expect((error as BusError).code).toBe(BusErrorCode.Unavailable);
    await closing;
  });

  it('fails an addService whose endpoints the server never confirmed, and leaves nothing to answer after the reconnect', async () => {
    let broken: TcpProxy;
    ({ proxy: broken, bus } = await connectThroughProxy());
    proxy = broken;
    const connected = bus;
    broken.partition(); // the endpoints' subscriptions and the flush never reach the server
    const adding = connected.addService({
      name: 'outage-orphan',
      version: '0.0.1',
      description: 'an endpoint added as the connection drops',
      endpoints: [{ name: 'echo', subject: 'outage.orphan', handler: async (data) => data }],
    });
    setTimeout(() => broken.cut(), 100);
    const error = await adding.then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(BusError);
    expect((error as BusError).code).toBe(BusErrorCode.Unavailable);
    broken.restore();
    await vi.waitFor(() => expect(connected.isConnected()).toBe(true), { timeout: 10_000 });
    const asker = await connectNatsBus({
      servers: [TEST_NATS_URL],
      name: 'outage-asker',
      subjects: createSubjects('outage'),
      logger: createLogger({ name: 'outage-test', level: 'silent' }),
    });
    try {
      // Before: nats.js subscribed the endpoint again on reconnecting, and it answered.
      const answer = await asker.request('outage.orphan', new TextEncoder().encode('anyone?'), 1_000).then(
        () => 'answered',
        () => 'no answer',
      );
      expect(answer).toBe('no answer');
    } finally {
      await asker.close();
    }
  }, 30_000);
});
