import { Counter, type Registry } from 'prom-client';

export function createAuthMetrics(registry: Registry) {
  const metrics = {
    logins: new Counter({
      name: 'switchboard_auth_logins_total',
      help: 'Password logins by outcome (success, failure, throttled, busy: refused for too many password checks at once).',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    tokensIssued: new Counter({
      name: 'switchboard_auth_tokens_issued_total',
      help: 'Access tokens issued by kind (password, service) and refused service-token calls (service_refused).',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    usersCreated: new Counter({
      name: 'switchboard_auth_users_created_total',
      help: 'Users created through POST /v1/users, by role.',
      labelNames: ['role'] as const,
      registers: [registry],
    }),
  };
  // Each series from 0, so that its first count shows in rate() and increase(): a series that
  // appears at 1 does not, and after a restart that first one may be the only one.
  for (const outcome of ['success', 'failure', 'throttled', 'busy']) metrics.logins.inc({ outcome }, 0);
  for (const kind of ['password', 'service', 'service_refused']) metrics.tokensIssued.inc({ kind }, 0);
  for (const role of ['user', 'agent', 'admin']) metrics.usersCreated.inc({ role }, 0);
  return metrics;
}

export type AuthMetrics = ReturnType<typeof createAuthMetrics>;
