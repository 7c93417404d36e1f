import { Counter, type Registry } from 'prom-client';

export function createAuthMetrics(registry: Registry) {
  return {
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
}

export type AuthMetrics = ReturnType<typeof createAuthMetrics>;
