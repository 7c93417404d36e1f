import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createGatewayMetrics } from './metrics.js';

describe('gateway metrics', () => {
  it('start every error code at 0, so that a first error after a restart shows in rate() and increase()', async () => {
    const registry = new Registry();
    createGatewayMetrics(registry);
    const text = await registry.metrics();
    for (const code of ['internal', 'unavailable', 'rate_limited', 'auth_failed', 'payload_too_large'])
      expect(text).toContain(`switchboard_gateway_errors_total{code="${code}"} 0`);
  });
});
