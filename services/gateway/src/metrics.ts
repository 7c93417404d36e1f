import { ErrorCode } from '@switchboard/protocol';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export function createGatewayMetrics(registry: Registry) {
  const metrics = {
    connections: new Gauge({ name: 'switchboard_gateway_connections', help: 'Open WebSocket connections.', registers: [registry] }),
    authenticatedConnections: new Gauge({
      name: 'switchboard_gateway_authenticated_connections',
      help: 'Open WebSocket connections that have authenticated.',
      registers: [registry],
    }),
    sessions: new Gauge({
      name: 'switchboard_gateway_sessions',
      help: 'Sessions this gateway is subscribed to (at least one local socket joined or one send in flight).',
      registers: [registry],
    }),
    framesIn: new Counter({
      name: 'switchboard_gateway_frames_in_total',
      help: 'Frames received from clients, by type (invalid when it could not be read).',
      labelNames: ['type'] as const,
      registers: [registry],
    }),
    framesOut: new Counter({
      name: 'switchboard_gateway_frames_out_total',
      help: 'Frames sent to clients, by type.',
      labelNames: ['type'] as const,
      registers: [registry],
    }),
    errors: new Counter({
      name: 'switchboard_gateway_errors_total',
      help: 'Error frames sent to clients, by code.',
      labelNames: ['code'] as const,
      registers: [registry],
    }),
    sendConfirmSeconds: new Histogram({
      name: 'switchboard_gateway_send_confirm_seconds',
      help: 'From receiving send_message to message_ack (stored in PostgreSQL).',
      buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    duplicateSends: new Counter({
      name: 'switchboard_gateway_duplicate_sends_total',
      help: 'Sends the inbound stream already held from the same sender: a client retrying a message (same client_msg_id) sent before, on this gateway or another. Each is acked once stored, and stored once.',
      registers: [registry],
    }),
    gapFills: new Counter({
      name: 'switchboard_gateway_gap_fills_total',
      help: 'Times a session delivery fetched missing messages from persistence.',
      registers: [registry],
    }),
    gapFillFailures: new Counter({
      name: 'switchboard_gateway_gap_fill_failures_total',
      help: 'Gap fills that failed (persistence down or not answering) and wait to be tried again: the log warns only of the first in a row.',
      registers: [registry],
    }),
    headCatchUps: new Counter({
      name: 'switchboard_gateway_head_catch_ups_total',
      help: 'Sessions still behind the database a second after the periodic check found them, then fetched: confirmed events lost, or over a second late.',
      registers: [registry],
    }),
    slowClientsClosed: new Counter({
      name: 'switchboard_gateway_slow_clients_closed_total',
      help: 'Sockets closed because their send buffer stayed over MAX_BUFFERED_BYTES.',
      registers: [registry],
    }),
    natsReconnects: new Counter({
      name: 'switchboard_gateway_nats_reconnects_total',
      help: 'Reconnections to NATS.',
      registers: [registry],
    }),
  };
  // Each code from 0, so that its first error shows in rate() and increase(): a series that appears
  // at 1 does not, and after a restart that first `internal` or `unavailable` may be the only one.
  for (const code of Object.values(ErrorCode)) metrics.errors.inc({ code }, 0);
  // Counted once per frame per socket: the labelled children are looked up once, not per frame.
  const framesOutByType = new Map<string, { inc(): void }>();
  return {
    ...metrics,
    frameOut(type: string): void {
      let child = framesOutByType.get(type);
      if (!child) {
        child = metrics.framesOut.labels({ type });
        framesOutByType.set(type, child);
      }
      child.inc();
    },
  };
}

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;
