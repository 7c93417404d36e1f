import type { Logger } from '@switchboard/logging';
import { type FastifyBaseLogger, fastify } from 'fastify';
import type { Registry } from 'prom-client';
import type { StartingProbes } from './starting-probes.js';

/** A named readiness check; `/readyz` is 200 only while every check returns true. */
export type ReadinessChecks = Record<string, () => boolean>;

export interface OpsServerOptions {
  port: number;
  host?: string;
  registry: Registry;
  checks: ReadinessChecks;
  logger: Logger;
  /** The probes answered while the service started (`serveStartingProbes`): closed just before this listens on their port. */
  replacing?: StartingProbes | undefined;
}

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serves `/healthz`, `/readyz` and `/metrics` (contract §1) on the ops port. */
export async function startOpsServer({
  port,
  host = '0.0.0.0',
  registry,
  checks,
  logger,
  replacing,
}: OpsServerOptions): Promise<OpsServer> {
  // Probes and scrapes every few seconds would drown the log: request lines are left out (info
  // level). A child's level replaces its parent's, so a stricter LOG_LEVEL is kept.
  const level = logger.levelVal > (logger.levels.values.warn ?? 40) ? logger.level : 'warn';
  const app = fastify({ loggerInstance: logger.child({ module: 'ops' }, { level }) as FastifyBaseLogger });

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const results = Object.fromEntries(Object.entries(checks).map(([name, check]) => [name, check()]));
    const ready = Object.values(results).every(Boolean);
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks: results });
  });

  app.get('/metrics', async (_request, reply) => {
    const body = await registry.metrics();
    return reply.type(registry.contentType).send(body);
  });

  await replacing?.close();
  await app.listen({ port, host });
  const address = app.server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () => app.close(),
  };
}
