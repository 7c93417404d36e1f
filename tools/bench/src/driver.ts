import type { Plan } from './plan.js';

/** What a client connection reports, whatever the system. */
/** Process ids of shared infrastructure, by name. */
export type InfraPids = Record<string, readonly number[]>;

export interface EventSink {
  ack(connection: number, clientMsgId: string): void;
  /** A send refused or failed (`clientMsgId` unknown when the server did not say). */
  error(connection: number, clientMsgId: string | undefined, code: string): void;
  /** A message delivered to a member; `seq` when the system numbers a session's messages. */
  delivery(connection: number, clientMsgId: string, content: string, seq: number | undefined): void;
  /** A connection closed while the bench still needed it. */
  closed(connection: number, code: number): void;
}

/** A process of the system under test, whose CPU and memory the bench reads. */
export interface MeasuredProcess {
  readonly name: string;
  /** Prometheus text with `process_cpu_seconds_total` and `process_resident_memory_bytes`. */
  readonly metricsUrl?: string | undefined;
  readonly pid?: number | undefined;
}

/** One system under test, seen from its clients: Switchboard or a baseline. */
export interface System {
  readonly name: string;
  readonly label: string;
  /** The server processes (the system's own, started or targeted by the bench). */
  readonly processes: readonly MeasuredProcess[];
  /**
   * Shared infrastructure processes it uses, by name (`nats`, `postgres` for the backends of its
   * database, `redis`), read from /proc. Called at each CPU reading, on the generator's event loop
   * at the window's edges: what does not change during a run is looked up before it.
   */
  infraPids(): Promise<InfraPids>;
  /** Opens every connection, authenticates, creates the sessions and joins every member. */
  connect(plan: Plan, sink: EventSink, onProgress?: (line: string) => void): Promise<void>;
  send(connection: number, session: number, clientMsgId: string, content: string): void;
  /** Closes the client connections. */
  disconnect(): Promise<void>;
  /** The system's key of session index `session` (Switchboard: its id), once connected. */
  sessionKey?(session: number): string;
  /** Called when a measurement window opens (starts the CPU profilers under `--profile`). */
  onWindowOpen?(): void;
  /** Stops whatever servers the bench started for it. */
  stop(): Promise<void>;
}

/** Runs `task` over `items` with at most `concurrency` at a time. */
export async function inPool<T>(items: readonly T[], concurrency: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      await task(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

export const clientMsgIdOf = (g: number) => `m${g}`;
export const indexOfClientMsgId = (clientMsgId: string) => (clientMsgId.charCodeAt(0) === 109 ? Number(clientMsgId.slice(1)) : Number.NaN);
let padding = '';

/** Pads every message's content to about `chars` characters (a typical chat line is around 100). */
export function setContentSize(chars: number): void {
  padding = chars > 40 ? ':'.padEnd(chars - 30, 'x') : '';
}

/**
 * `bench:m<g>:<µs>[:xxx…]`: the content carries the scheduled send time (µs on the generator's
 * monotonic clock), so any member can time its delivery from the content alone.
 */
export const contentOf = (g: number, scheduledMs: number) => `bench:m${g}:${Math.round(scheduledMs * 1000)}${padding}`;

export function scheduledMsOf(content: string): number {
  const start = content.indexOf(':', 6);
  if (start < 0) return Number.NaN;
  const end = content.indexOf(':', start + 1);
  return Number(end < 0 ? content.slice(start + 1) : content.slice(start + 1, end)) / 1000;
}
