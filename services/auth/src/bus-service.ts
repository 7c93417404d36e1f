import { encodeJson, type ServiceSpec } from '@switchboard/bus';
import type { Subjects } from '@switchboard/protocol';

export const SERVICE_VERSION = '0.1.0';

/**
 * The auth service in the NATS services framework (`$SRV.PING/INFO/STATS` list it), with one
 * endpoint that answers an empty request with the JWKS. Replicas share the endpoint.
 */
export function authServiceSpec({
  subjects,
  jwks,
  stats,
}: {
  subjects: Subjects;
  jwks: () => Promise<unknown>;
  stats: () => Promise<Record<string, number>>;
}): ServiceSpec {
  return {
    stats,
    name: subjects.authServiceName,
    version: SERVICE_VERSION,
    description: 'Switchboard auth: the public keys that verify access tokens',
    endpoints: [{ name: 'jwks', subject: subjects.authJwks, handler: async () => encodeJson(await jwks()) }],
  };
}
