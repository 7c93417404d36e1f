/**
 * Every NATS subject, stream, consumer and service name, built from one prefix (`NATS_SUBJECT_PREFIX`,
 * default `switchboard`) so that several installations can share one NATS account.
 * docs/architecture.md lists them.
 */
export const PERSISTENCE_ENDPOINTS = [
  'sessions.create',
  'sessions.get',
  'sessions.list',
  'sessions.heads',
  'messages.history',
  'messages.after',
  'messages.lookup',
] as const;
export type PersistenceEndpoint = (typeof PERSISTENCE_ENDPOINTS)[number];

/**
 * Inbound subjects are partitions of sessions (session id mod this), not one per session: a
 * work-queue stream on NATS 2.9 slows down with the number of subjects holding messages (about
 * 7,000 messages/s over 2,000 subjects against some 30,000 over a few hundred). Order does not
 * depend on it: the stream keeps one order over all its subjects, and persistence reads the
 * session from the message. Changing it is safe at any time.
 */
export const INBOUND_PARTITIONS = 256;

export interface Subjects {
  readonly prefix: string;
  /** JetStream stream holding inbound messages until persistence has stored them. */
  readonly inboundStream: string;
  /** Durable pull consumer of the inbound stream, shared by every persistence replica. */
  readonly inboundConsumer: string;
  /** Subject filter of the inbound stream. */
  readonly inboundAll: string;
  /** Where a gateway publishes a `send_message` for a session (a JetStream subject, shared by every session of its partition). */
  inbound(sessionId: number): string;
  /** Where persistence publishes stored messages of a session (core NATS). */
  confirmed(sessionId: number): string;
  /** Where persistence reports messages it could not store, for operators (core NATS). */
  readonly deadLetters: string;
  /** Persistence request/reply endpoints (NATS services framework). */
  persistence(endpoint: PersistenceEndpoint): string;
  readonly persistenceServiceName: string;
  /** Auth service (NATS services framework) endpoint answering with the JWKS. */
  readonly authJwks: string;
  /**
   * Where auth announces that a user's tokens issued until a moment are no longer to be accepted
   * (the account was disabled, its role or password changed), for the gateways (core NATS).
   */
  readonly authRevocations: string;
  readonly authServiceName: string;
  readonly gatewayServiceName: string;
  /** Gateway status endpoint: connections and sessions of the gateway that answers. */
  readonly gatewayStatus: string;
}

export function createSubjects(prefix: string): Subjects {
  const streamPrefix = prefix.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  return {
    prefix,
    inboundStream: `${streamPrefix}_INBOUND`,
    inboundConsumer: 'persistence',
    inboundAll: `${prefix}.inbound.>`,
    inbound: (sessionId) => `${prefix}.inbound.${sessionId % INBOUND_PARTITIONS}`,
    confirmed: (sessionId) => `${prefix}.confirmed.${sessionId}`,
    deadLetters: `${prefix}.dead`,
    persistence: (endpoint) => `${prefix}.persistence.${endpoint}`,
    persistenceServiceName: `${prefix}-persistence`,
    authJwks: `${prefix}.auth.jwks`,
    authRevocations: `${prefix}.auth.revoked`,
    authServiceName: `${prefix}-auth`,
    gatewayServiceName: `${prefix}-gateway`,
    gatewayStatus: `${prefix}.gateway.status`,
  };
}
