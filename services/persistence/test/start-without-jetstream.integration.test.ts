import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSubjects } from '@switchboard/protocol';
import {
  createTestDatabase,
  httpStatus,
  NatsServer,
  type ServiceProcess,
  startService,
  type TestDatabase,
  uniqueSubjectPrefix,
  waitFor,
} from '@switchboard/testing';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The services started on a NATS that does not answer for JetStream: a cluster starting cold,
 * before it has a leader, stood in for by a server without JetStream (its API gets no responders,
 * as it does there). Before, nats.js's check of the JetStream API failed every start, auth's and
 * the gateways' too, and the pods crash-looped with a back-off that grew.
 */

let database: TestDatabase | undefined;
let nats: NatsServer | undefined;
const services: ServiceProcess[] = [];

afterAll(async () => {
  for (const service of services) await service.stop();
  await nats?.remove();
  await database?.drop();
});

describe('a start while JetStream does not answer', () => {
  it('starts auth and the gateway, keeps persistence alive and not ready, and sets up its stream once JetStream answers', async () => {
    database = await createTestDatabase('persistence_start_without_jetstream');
    nats = await NatsServer.start(await mkdtemp(join(tmpdir(), 'start-without-jetstream-')), [], { jetStream: false });
    const env = { DATABASE_URL: database.url, NATS_URL: nats.url, NATS_SUBJECT_PREFIX: uniqueSubjectPrefix() };

    // Neither manages a stream: both start and are ready.
    services.push(await startService('auth', { env }));
    services.push(await startService('gateway', { env }));
    const persistence = await startService('persistence', { env, waitReady: false });
    services.push(persistence);

    await waitFor(() => persistence.logs.some((line) => line.includes('waiting for JetStream')), 15_000, 'the wait to be logged');
    expect(await httpStatus(persistence.opsUrl('/healthz'))).toBe(200);
    expect(await httpStatus(persistence.opsUrl('/readyz'))).toBe(503);
    expect(persistence.child.exitCode).toBeNull();

    // JetStream comes (the same address, now with it), and persistence goes on without a restart.
    await nats.kill();
    await nats.restart();
    await waitFor(async () => (await httpStatus(persistence.opsUrl('/readyz'))) === 200, 30_000, 'persistence to be ready');
    const streams = (await nats.jetStreamInfo())?.account_details?.flatMap((account) => account.stream_detail ?? []) ?? [];
    expect(streams.map((stream) => stream.name)).toContain(createSubjects(env.NATS_SUBJECT_PREFIX).inboundStream);
    for (const service of services) expect(service.child.exitCode).toBeNull();
  }, 90_000);
});
