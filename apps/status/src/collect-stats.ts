import { Empty, type EndpointStats, ErrorCode, type NatsConnection, NatsError, RequestStrategy } from 'nats';

/** The subject on which every instance of the NATS services framework answers with its stats. */
const STATS_SUBJECT = '$SRV.STATS';

/** How much of a skipped reply a warning quotes. */
const QUOTED_CHARS = 80;

export interface CollectedStats {
  stats: EndpointStats[];
  /** One line for each reply skipped as not a service's stats (not JSON, or JSON without a service's fields), quoting it. */
  skipped: string[];
}

/**
 * Every `$SRV.STATS` answer that arrives within `maxWaitMs`, of any service on this NATS account.
 * When no service at all subscribes to `$SRV.STATS`, NATS answers the request itself with a
 * 503 "no responders" status, which nats.js raises as an error; that is the same fact as an empty
 * answer, zero instances, and is reported as such rather than as a failure.
 *
 * Each reply is parsed on its own: anything may subscribe to `$SRV.STATS`, and one reply that is
 * not a service's stats (a stray responder answering `x`, or `null`) is skipped, where nats.js's
 * services client ends the whole answer on it.
 */
export async function collectStats(nc: NatsConnection, maxWaitMs: number): Promise<CollectedStats> {
  const collected: CollectedStats = { stats: [], skipped: [] };
  try {
    for await (const reply of await nc.requestMany(STATS_SUBJECT, Empty, { strategy: RequestStrategy.Timer, maxWait: maxWaitMs })) {
      const text = reply.string();
      const stats = parseStats(text);
      if (stats) collected.stats.push(stats);
      else collected.skipped.push(`skipped a ${STATS_SUBJECT} reply that is not a service's stats: ${quote(text)}`);
    }
  } catch (error) {
    if (!(error instanceof NatsError && error.code === ErrorCode.NoResponders)) throw error;
  }
  return collected;
}

/**
 * The reply as stats when it has what a row is made of: name, id, version, start time, and
 * endpoints with their counts. Which of them are this installation's services is `toRows`'s
 * business; a reply naming one of them without an id, say, would otherwise end the whole run.
 */
function parseStats(text: string): EndpointStats | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return isStats(value) ? value : undefined;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function isStats(value: unknown): value is EndpointStats {
  if (!isObject(value)) return false;
  const { name, id, version, started, endpoints } = value;
  return (
    typeof name === 'string' &&
    typeof id === 'string' &&
    typeof version === 'string' &&
    typeof started === 'string' &&
    !Number.isNaN(Date.parse(started)) &&
    (endpoints === undefined ||
      (Array.isArray(endpoints) &&
        endpoints.every(
          (endpoint) => isObject(endpoint) && typeof endpoint.num_requests === 'number' && typeof endpoint.num_errors === 'number',
        )))
  );
}

const quote = (text: string) => JSON.stringify(text.length > QUOTED_CHARS ? `${text.slice(0, QUOTED_CHARS)}…` : text);
