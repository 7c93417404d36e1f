import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { httpStatus, NatsServer, type ServiceProcess, startService, uniqueSubjectPrefix, waitFor } from '@switchboard/testing';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * A gateway started while NATS is down. Before, its ops port stayed closed until NATS answered:
 * no probe was answered, and Kubernetes' startup probe restarted it every few minutes.
 */

let nats: NatsServer | undefined;
let gateway: ServiceProcess | undefined;

afterAll(async () => {
  await gateway?.stop();
  await nats?.remove();
});

describe('a service started while NATS is down', () => {
  it('is alive but not ready until NATS comes, then ready without a restart', async () => {
    nats = await NatsServer.start(await mkdtemp(join(tmpdir(), 'start-without-nats-')));
    await nats.kill();
    gateway = await startService('gateway', { env: { NATS_URL: nats.url, NATS_SUBJECT_PREFIX: uniqueSubjectPrefix() }, waitReady: false });
    const running = gateway;

    await waitFor(async () => (await httpStatus(running.opsUrl('/healthz'))) === 200, 10_000, 'the gateway to answer /healthz');
    const starting = await fetch(running.opsUrl('/readyz'));
    expect(starting.status).toBe(503);
    // The shape of the service's own /readyz.
    expect(await starting.json()).toEqual({ status: 'not_ready', checks: { started: false } });
    expect(running.logs.some((line) => line.includes('waiting for NATS'))).toBe(true);

    await nats.restart();
    await waitFor(async () => (await httpStatus(running.opsUrl('/readyz'))) === 200, 20_000, 'the gateway to be ready');
    expect(await httpStatus(running.opsUrl('/healthz'))).toBe(200);
    expect((await fetch(running.opsUrl('/metrics')).then((response) => response.text())).includes('switchboard_gateway_connections')).toBe(
      true,
    );
    expect(running.child.exitCode).toBeNull();
    expect(await running.stop()).toBe(0);
  }, 60_000);
});
