import { freePort } from '@switchboard/testing';

/**
 * The environment of a one-process system of a test's own: free ports, the given data directory,
 * and neither NATS nor a PostgreSQL server (the in-process bus and the embedded database).
 */
export async function embeddedEnv(dataDir: string): Promise<Record<string, string>> {
  return {
    DATA_DIR: dataDir,
    PORT: String(await freePort()),
    OPS_PORT: String(await freePort()),
    AUTH_PORT: String(await freePort()),
    AUTH_OPS_PORT: String(await freePort()),
    PERSISTENCE_OPS_PORT: String(await freePort()),
    NATS_URL: '',
    DATABASE_URL: '',
  };
}
