import type { JSONWebKeySet } from 'jose';

/** Where a verifier gets the public keys. */
export interface KeySource {
  fetchKeys(): Promise<JSONWebKeySet>;
}

export const DEFAULT_KEY_REQUEST_TIMEOUT_MS = 2_000;

/** A request/reply call on the message bus (NATS in production). */
export type RequestFn = (subject: string, data: Uint8Array, timeoutMs: number) => Promise<Uint8Array>;

/** Asks the auth service for its JWKS with an empty request on `subject`. */
export function requestKeySource(request: RequestFn, subject: string, timeoutMs = DEFAULT_KEY_REQUEST_TIMEOUT_MS): KeySource {
  return {
    async fetchKeys() {
      const reply = await request(subject, new Uint8Array(), timeoutMs);
      const body: unknown = JSON.parse(new TextDecoder().decode(reply));
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
