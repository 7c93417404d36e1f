import type { JSONWebKeySet } from 'jose';
import type { NatsConnection } from 'nats';

/** Where a verifier gets the public keys. */
export interface KeySource {
  fetchKeys(): Promise<JSONWebKeySet>;
}

export const DEFAULT_KEY_REQUEST_TIMEOUT_MS = 2_000;

/** Asks the auth service for its JWKS over NATS request/reply. */
export function natsKeySource(nc: NatsConnection, subject: string, timeoutMs = DEFAULT_KEY_REQUEST_TIMEOUT_MS): KeySource {
  return {
    async fetchKeys() {
      const reply = await nc.request(subject, new Uint8Array(), { timeout: timeoutMs });
      const body: unknown = reply.json();
      if (!isJwks(body)) throw new Error(`malformed JWKS reply on ${subject}`);
      return body;
    },
  };
}

function isJwks(value: unknown): value is JSONWebKeySet {
  return (
    typeof value === 'object' &&
    value !== null &&
    Array.isArray((value as { keys?: unknown }).keys) &&
    (value as { keys: unknown[] }).keys.every((key) => typeof key === 'object' && key !== null)
  );
}
