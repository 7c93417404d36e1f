import type { Logger } from '@switchboard/logging';
import { encodeJson } from '@switchboard/nats';
import type { Subjects } from '@switchboard/protocol';
import type { NatsConnection, Service } from 'nats';

export const SERVICE_VERSION = '0.1.0';

/**
 * Registers the auth service with the NATS services framework, so `$SRV.PING/INFO/STATS` list it,
 * with one endpoint that answers with the JWKS. Replicas share the endpoint's queue group.
 */
export async function addAuthNatsService(
  nc: NatsConnection,
  { subjects, jwks, logger }: { subjects: Subjects; jwks: () => unknown; logger: Logger },
): Promise<Service> {
  const service = await nc.services.add({
    name: subjects.authServiceName,
    version: SERVICE_VERSION,
    description: 'Switchboard auth: the public keys that verify access tokens',
  });
  service.addEndpoint('jwks', {
    subject: subjects.authJwks,
    handler: (error, msg) => {
      if (error) {
        logger.error({ err: error }, 'jwks endpoint failed');
        return;
      }
      msg.respond(encodeJson(jwks()));
    },
  });
  return service;
}
