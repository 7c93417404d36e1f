import { once } from 'node:events';
import { createServer } from 'node:http';
import type { Logger } from '@switchboard/logging';

export interface StartingProbes {
  /** Frees the ops port, for the service's own ops server to take it. */
  close(): Promise<void>;
}

/**
 * The ops port while a service starts, before its own ops server listens: `/healthz` 200 (the
 * process is alive, waiting for PostgreSQL or NATS, or migrating), `/readyz` and `/metrics` 503.
 * Without it a service started while NATS is down answered no probe at all, and Kubernetes'
 * startup probe restarted it every few minutes, its back-off growing meanwhile, so that it came
 * back minutes after NATS did.
 */
export async function serveStartingProbes({
  port,
  host = '0.0.0.0',
  logger,
}: {
  port: number;
  host?: string;
  logger: Logger;
}): Promise<StartingProbes> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const alive = path === '/healthz';
    // The shape of the service's own /readyz, with one check not passed yet.
    const body = alive
      ? { status: 'ok' }
      : path === '/readyz'
        ? { status: 'not_ready', checks: { started: false } }
        : { error: 'starting' };
    response.writeHead(alive ? 200 : path === '/readyz' || path === '/metrics' ? 503 : 404, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  });
  server.listen(port, host);
  await once(server, 'listening');
  logger.debug({ port }, 'answering probes while starting');
  let closed: Promise<void> | undefined;
  return {
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
