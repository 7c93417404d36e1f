import { deleteInboundStream, TEST_NATS_URL } from './nats-streams.js';
import { httpStatus, type ServiceName, type ServiceProcess, startService, uniqueSubjectPrefix, waitFor } from './service-process.js';
import { TcpProxy } from './tcp-proxy.js';

export interface StartThroughOutages {
  service: ServiceProcess;
  /** For a service that waits as it should: `{ exitCode: null, waitedForDatabaseAfterNats: true, readyz: 200 }`. */
  outcome: {
    exitCode: number | null;
    /** Whether it logged that it waited for PostgreSQL after NATS had come. */
    waitedForDatabaseAfterNats: boolean;
    readyz: number;
  };
  close(): Promise<void>;
}

/**
 * Starts `name` with NATS refusing connections; once it waits for NATS, takes PostgreSQL away and
 * brings NATS back; once it waits for PostgreSQL again (or exits), brings PostgreSQL back. A
 * service that waits for each as it needs it is then ready, never having exited.
 */
export async function startThroughOutages(name: ServiceName, databaseUrl: string): Promise<StartThroughOutages> {
  const natsTarget = new URL(TEST_NATS_URL);
  const nats = await TcpProxy.start({ host: natsTarget.hostname, port: Number(natsTarget.port || 4222) });
  const database = await TcpProxy.toPostgres(databaseUrl);
  nats.cut();
  const prefix = uniqueSubjectPrefix();
  const natsUrl = nats.url(TEST_NATS_URL);
  const service = await startService(name, {
    env: { DATABASE_URL: database.url(databaseUrl), NATS_URL: natsUrl, NATS_SUBJECT_PREFIX: prefix },
    waitReady: false,
  });
  const close = async () => {
    await service.stop();
    await Promise.all([nats.close(), database.close()]);
    await deleteInboundStream(TEST_NATS_URL, prefix);
  };
  try {
    await waitFor(() => service.logs.some((line) => line.includes('waiting for NATS')), 20_000, `${name} to wait for NATS`);
    const before = service.logs.length;
    database.cut();
    nats.restore();
    const waitedAfter = () => service.logs.slice(before).some((line) => line.includes('waiting for PostgreSQL'));
    await waitFor(() => waitedAfter() || service.child.exitCode !== null, 20_000, `${name} to wait for PostgreSQL, or exit`);
    database.restore();
    if (service.child.exitCode === null)
      await waitFor(async () => (await httpStatus(service.opsUrl('/readyz'))) === 200, 30_000, `${name} to be ready`);
    const readyz = service.child.exitCode === null ? await httpStatus(service.opsUrl('/readyz')) : 0;
    return { service, outcome: { exitCode: service.child.exitCode, waitedForDatabaseAfterNats: waitedAfter(), readyz }, close };
  } catch (error) {
    await close();
    throw error;
  }
}
