import { natsConnectOptions } from '@switchboard/bus';
import { commonEnv, DEFAULT_NATS_URL } from '@switchboard/config';
import { createSubjects } from '@switchboard/protocol';
import { connect } from 'nats';

/**
 * The NATS server (with JetStream) the tests use: `TEST_NATS_URL`, else the local one. Never
 * `NATS_URL`, which may name a deployment's server in the shell the tests run from.
 */
export const TEST_NATS_URL = process.env.TEST_NATS_URL ?? DEFAULT_NATS_URL;

/**
 * Deletes the inbound stream (and with it its consumer) that persistence created for a stack's
 * subject prefix. Without it every stack, in the tests and the bench, left a stream and a durable
 * consumer on the shared NATS, and a day's runs piled up hundreds of them for NATS to keep.
 * Best effort: a NATS that is down, or private to a test and already stopped, is left alone.
 */
export async function deleteInboundStream(natsUrl: string | undefined, prefix: string): Promise<void> {
  // Read as the services read NATS_URL; one they would refuse started no persistence.
  const parsed = commonEnv.NATS_URL.safeParse(natsUrl);
  if (!parsed.success) return;
  const servers = parsed.data;
  const nc = await connect({ ...natsConnectOptions(servers), timeout: 2_000, maxReconnectAttempts: 0 }).catch(() => undefined);
  if (!nc) return;
  try {
    const jsm = await nc.jetstreamManager({ timeout: 2_000 });
    await jsm.streams.delete(createSubjects(prefix).inboundStream);
  } catch {
    // Not there (no persistence ever started) or NATS went away: nothing to clean.
  } finally {
    await nc.close().catch(() => undefined);
  }
}
