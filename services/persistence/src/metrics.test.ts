import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createPersistenceMetrics } from './metrics.js';

describe('persistence metrics', () => {
  it('start every labelled series the alerts and dashboards read at 0, so that a first increment shows in increase()', async () => {
    const registry = new Registry();
    createPersistenceMetrics(registry);
    const text = await registry.metrics();
    for (const series of [
      'switchboard_persistence_messages_total{outcome="dead_lettered"} 0',
      'switchboard_persistence_messages_total{outcome="stored"} 0',
      'switchboard_persistence_state_repairs_total{constraint="messages_pkey"} 0',
      'switchboard_persistence_state_repairs_total{constraint="messages_session_seq_key"} 0',
      'switchboard_persistence_batch_splits_total{reason="size"} 0',
      'switchboard_persistence_batch_splits_total{reason="message"} 0',
      'switchboard_persistence_event_publish_failures_total{event="confirmed"} 0',
    ])
      expect(text).toContain(series);
  });
});
