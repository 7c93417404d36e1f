import { type EndpointStats, ErrorCode, type NatsConnection, NatsError, RequestStrategy } from 'nats';

/**
 * Every `$SRV.STATS` answer that arrives within `maxWaitMs`, of any service on this NATS account.
 * When no service at all subscribes to `$SRV.STATS`, NATS answers the request itself with a
 * 503 "no responders" status, which nats.js raises as an error; that is the same fact as an empty
 * answer, zero instances, and is reported as such rather than as a failure.
 */
export async function collectStats(nc: NatsConnection, maxWaitMs: number): Promise<EndpointStats[]> {
  const stats: EndpointStats[] = [];
  try {
    for await (const entry of await nc.services.client({ strategy: RequestStrategy.Timer, maxWait: maxWaitMs }).stats()) stats.push(entry);
  } catch (error) {
    if (!(error instanceof NatsError && error.code === ErrorCode.NoResponders)) throw error;
  }
  return stats;
}
