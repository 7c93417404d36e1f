import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createAuthMetrics } from './metrics.js';

describe('auth metrics', () => {
  it('start every outcome, kind and role at 0, so that a first count after a restart shows in rate() and increase()', async () => {
    const registry = new Registry();
    createAuthMetrics(registry);
    const text = await registry.metrics();
    for (const series of [
      'switchboard_auth_logins_total{outcome="failure"} 0',
      'switchboard_auth_logins_total{outcome="throttled"} 0',
      'switchboard_auth_logins_total{outcome="busy"} 0',
      'switchboard_auth_tokens_issued_total{kind="service_refused"} 0',
      'switchboard_auth_users_created_total{role="user"} 0',
    ])
      expect(text).toContain(series);
  });
});
