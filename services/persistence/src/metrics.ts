import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export function createPersistenceMetrics(registry: Registry) {
  const metrics = {
    batchSize: new Histogram({
      name: 'switchboard_persistence_batch_size',
      help: 'Inbound messages stored per transaction.',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000],
      registers: [registry],
    }),
    commitSeconds: new Histogram({
      name: 'switchboard_persistence_commit_seconds',
      help: 'Time to store one batch, from BEGIN to COMMIT.',
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    messages: new Counter({
      name: 'switchboard_persistence_messages_total',
      help: 'Inbound messages handled, by outcome (stored, duplicate, dead_lettered).',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    redeliveries: new Counter({
      name: 'switchboard_persistence_redeliveries_total',
      help: 'Inbound messages JetStream delivered more than once.',
      registers: [registry],
    }),
    storeRetries: new Counter({
      name: 'switchboard_persistence_store_retries_total',
      help: 'Batches retried because PostgreSQL was unreachable or the transaction had to be retried.',
      registers: [registry],
    }),
    batchSplits: new Counter({
      name: 'switchboard_persistence_batch_splits_total',
      help: 'Batches split in halves after an error they may have met for their size (size: out of memory, a timeout) or for one of their messages (message).',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    stateRepairs: new Counter({
      name: 'switchboard_persistence_state_repairs_total',
      help: "Counters found behind the stored messages and advanced to them, by the constraint their violation named: messages_session_seq_key (a session's last_seq), messages_pkey (the messages' id sequence).",
      labelNames: ['constraint'] as const,
      registers: [registry],
    }),
    publishFailures: new Counter({
      name: 'switchboard_persistence_event_publish_failures_total',
      help: 'Events NATS refused after their messages were committed or dead-lettered (confirmed, dead_letter); the messages are acked without them.',
      labelNames: ['event'] as const,
      registers: [registry],
    }),
    consumerPending: new Gauge({
      name: 'switchboard_persistence_consumer_pending_messages',
      help: 'Inbound messages not yet delivered to persistence (consumer lag).',
      registers: [registry],
    }),
    consumerAckPending: new Gauge({
      name: 'switchboard_persistence_consumer_ack_pending_messages',
      help: 'Inbound messages delivered but not yet acknowledged.',
      registers: [registry],
    }),
  };
  // Each labelled series from 0: one that appears already at 1 shows in neither `increase()` nor
  // `rate()`, so a single dead letter or repair, the usual case, never fired its alert.
  for (const outcome of ['stored', 'duplicate', 'dead_lettered']) metrics.messages.inc({ outcome }, 0);
  for (const reason of ['size', 'message']) metrics.batchSplits.inc({ reason }, 0);
  for (const constraint of ['messages_session_seq_key', 'messages_pkey']) metrics.stateRepairs.inc({ constraint }, 0);
  for (const event of ['confirmed', 'dead_letter']) metrics.publishFailures.inc({ event }, 0);
  return metrics;
}

export type PersistenceMetrics = ReturnType<typeof createPersistenceMetrics>;
