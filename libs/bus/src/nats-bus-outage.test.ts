import { createLogger } from '@switchboard/logging';
import { BusErrorCode, createSubjects } from '@switchboard/protocol';
import { TcpProxy } from '@switchboard/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Bus, BusError } from './bus.js';
import { connectNatsBus } from './nats-bus.js';

const NATS = new URL(process.env.NATS_URL ?? 'nats://127.0.0.1:4222');

describe('the NATS bus when the connection drops', () => {
  let bus: Bus | undefined;
  let proxy: TcpProxy | undefined;
  afterEach(async () => {
    await bus?.close();
    await proxy?.close();
  });

  it('fails a subscribe still waiting for the server with `unavailable`', async () => {
    proxy = await TcpProxy.start({ host: NATS.hostname, port: Number(NATS.port || 4222) });
    bus = await connectNatsBus({
      servers: [proxy.url(NATS.toString())],
      name: 'outage-test',
      subjects: createSubjects('outage'),
      logger: createLogger({ name: 'outage-test', level: 'silent' }),
    });
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
    proxy = await TcpProxy.start({ host: NATS.hostname, port: Number(NATS.port || 4222) });
    const connected = await connectNatsBus({
      servers: [proxy.url(NATS.toString())],
      name: 'outage-test',
      subjects: createSubjects('outage'),
      logger: createLogger({ name: 'outage-test', level: 'silent' }),
    });
    bus = connected;
    const known = connected.maxPayload();
    expect(Number.isFinite(known)).toBe(true);
    proxy.cut(); // the connection drops; each dial again is refused
    await vi.waitFor(() => expect(connected.isConnected()).toBe(false), { timeout: 5_000 });
    // nats.js forgets the server's INFO at each dial; before, the limit read as none meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(connected.maxPayload()).toBe(known);
  });
});
