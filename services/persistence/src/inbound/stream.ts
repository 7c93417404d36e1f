import type { Subjects } from '@switchboard/protocol';
import { AckPolicy, DeliverPolicy, type JetStreamManager, nanos, RetentionPolicy, StorageType } from 'nats';

export interface InboundStreamSettings {
  ackWaitMs: number;
  maxDeliver: number;
  duplicateWindowMs: number;
  maxAgeMs: number;
  replicas: number;
  /** Most messages delivered and not yet acked, across all replicas. */
  maxAckPending?: number;
}

/**
 * Creates or updates the inbound stream and its durable consumer. Persistence owns them; gateways
 * only publish. A work-queue stream: a message leaves it once persistence has acked it, because
 * PostgreSQL, not the stream, is the record.
 */
export async function ensureInboundStream(jsm: JetStreamManager, subjects: Subjects, settings: InboundStreamSettings): Promise<void> {
  const stream = {
    name: subjects.inboundStream,
    subjects: [subjects.inboundAll],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    duplicate_window: nanos(settings.duplicateWindowMs),
    max_age: nanos(settings.maxAgeMs),
    num_replicas: settings.replicas,
  };
  const existing = await jsm.streams.info(subjects.inboundStream).catch(() => undefined);
  if (existing) await jsm.streams.update(subjects.inboundStream, stream);
  else await jsm.streams.add(stream);

  const consumer = {
    durable_name: subjects.inboundConsumer,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(settings.ackWaitMs),
    max_deliver: settings.maxDeliver,
    max_ack_pending: settings.maxAckPending ?? 20_000,
    filter_subject: subjects.inboundAll,
  };
  const existingConsumer = await jsm.consumers.info(subjects.inboundStream, subjects.inboundConsumer).catch(() => undefined);
  if (existingConsumer) await jsm.consumers.update(subjects.inboundStream, subjects.inboundConsumer, consumer);
  else await jsm.consumers.add(subjects.inboundStream, consumer);
}
