import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Bus, connectNatsBus, encodeJson } from '@switchboard/bus';
import { createLogger } from '@switchboard/logging';
import { createSubjects, type InboundMessage, inboundMessageId, type Subjects } from '@switchboard/protocol';
import {
  createTestDatabase,
  deleteInboundStream,
  NatsServer,
  query,
  type ServiceProcess,
  startService,
  TEST_DATABASE_ADMIN_URL,
  TEST_NATS_URL,
  type TestDatabase,
  uniqueSubjectPrefix,
  waitFor,
  withPgClient,
} from '@switchboard/testing';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What `promise` failed with, or undefined. */
export const failureOf = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  );

/**
 * A database, a subject prefix and a bus connection of a test file's own, for persistence
 * processes started as in production (`services/persistence/dist/main.js`).
 */
export interface Harness {
  readonly database: TestDatabase;
  readonly subjects: Subjects;
  readonly bus: Bus;
  startPersistence(env?: Record<string, string>): Promise<ServiceProcess>;
  /** Inserts sessions (after persistence has migrated) and returns their ids. */
  createSessions(count: number): Promise<number[]>;
  /** Publishes an inbound message as a gateway does. */
  publish(sessionId: number, clientMsgId: string, content?: string): Promise<void>;
  /** `session_id:client_msg_id` of each stored message, by session and seq. */
  stored(): Promise<{ session_id: number; seq: number; client_msg_id: string }[]>;
  deadLetters(): Promise<number>;
  /** Whether every message of the inbound stream has been delivered and acked. */
  allAcked(): Promise<boolean>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** The NATS server for the bus and the persistence processes: the shared one by default. */
  natsUrl?: string;
}

export async function startHarness(label: string, { natsUrl = TEST_NATS_URL }: HarnessOptions = {}): Promise<Harness> {
  const database = await createTestDatabase(label);
  const prefix = uniqueSubjectPrefix();
  const subjects = createSubjects(prefix);
  const bus = await connectNatsBus({
    servers: [natsUrl],
    name: `${label}-test`,
    subjects,
    logger: createLogger({ name: `${label}-test`, level: 'warn' }),
  });
  const services: ServiceProcess[] = [];

  return {
    database,
    subjects,
    bus,
    async startPersistence(env = {}) {
      const service = await startService('persistence', {
        env: { DATABASE_URL: database.url, NATS_URL: natsUrl, NATS_SUBJECT_PREFIX: prefix, ...env },
      });
      services.push(service);
      return service;
    },
    async createSessions(count) {
      const rows = await query<{ id: string }>(
        database.url,
        'insert into sessions (customer_id) select g from generate_series(1, $1::int) g returning id',
        [count],
      );
      return rows.map((row) => Number(row.id));
    },
    async publish(sessionId, clientMsgId, content = `content of ${clientMsgId}`) {
      const message: InboundMessage = {
        session_id: sessionId,
        client_msg_id: clientMsgId,
        sender_id: 1,
        sender_role: 'user',
        content,
        received_at: new Date().toISOString(),
      };
      await bus.publishDurable(subjects.inbound(sessionId), encodeJson(message), inboundMessageId(sessionId, clientMsgId), 5_000);
    },
    async stored() {
      const rows = await query<{ session_id: string; seq: string; client_msg_id: string }>(
        database.url,
        'select session_id, seq, client_msg_id from messages order by session_id, seq',
      );
      return rows.map((row) => ({ session_id: Number(row.session_id), seq: Number(row.seq), client_msg_id: row.client_msg_id }));
    },
    async deadLetters() {
      const [row] = await query<{ count: string }>(database.url, 'select count(*) from dead_letters');
      return Number(row?.count);
    },
    async allAcked() {
      const stats = await bus.inboundStats();
      return stats.pending === 0 && stats.ackPending === 0;
    },
    async close() {
      await Promise.all(services.map((service) => service.stop()));
      await bus.close();
      // The inbound stream (and its consumer), so runs do not pile them up on the shared NATS.
      await deleteInboundStream(natsUrl, prefix);
      await database.drop();
    },
  };
}

/**
 * Makes the database refuse writes, as a primary demoted to a standby does, or take them again:
 * `default_transaction_read_only` applies to new connections, so the open ones are terminated.
 */
export async function setReadOnly(database: TestDatabase, readOnly: boolean): Promise<void> {
  await withPgClient(TEST_DATABASE_ADMIN_URL, async (admin) => {
    const setting = readOnly ? 'set default_transaction_read_only = on' : 'reset default_transaction_read_only';
    await admin.query(`alter database "${database.name}" ${setting}`);
    await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [
      database.name,
    ]);
  });
}

/** Persistence's settings on a cluster: the inbound stream replicated on every server. */
export const REPLICATED = { INBOUND_REPLICAS: '3' };

/** A cluster of three private NATS servers, with a harness whose bus is on the first. */
export interface ClusterHarness {
  readonly servers: NatsServer[];
  readonly first: NatsServer;
  readonly live: Harness;
  /** The server (`n<index>`) that leads the inbound consumer, if one does. */
  consumerLeader(): Promise<string | undefined>;
  /** Publishes as a gateway does: again with the same id until NATS takes it (its stream may be electing a leader). */
  publish(sessionId: number, clientMsgId: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts the cluster, and a first persistence replica that makes the inbound stream and its
 * consumer and stops, and waits until the consumer has a leader.
 */
export async function startClusterHarness(label: string): Promise<ClusterHarness> {
  const root = await mkdtemp(join(tmpdir(), `switchboard-${label}-`));
  let servers: NatsServer[] = [];
  let live: Harness | undefined;
  const close = async () => {
    try {
      await live?.close();
    } finally {
      await Promise.allSettled(servers.map((server) => server.kill()));
      await rm(root, { recursive: true, force: true });
    }
  };
  try {
    servers = await NatsServer.startCluster(root, 3);
    const [first] = servers;
    if (!first) throw new Error('no cluster');
    const harness = await startHarness(label, { natsUrl: first.url });
    live = harness;
    await (await harness.startPersistence(REPLICATED)).stop();
    const consumerLeader = async () => {
      const streams = (await first.jetStreamInfo())?.account_details?.flatMap((account) => account.stream_detail ?? []);
      const stream = streams?.find((candidate) => candidate.name === harness.subjects.inboundStream);
      return stream?.consumer_detail?.find((consumer) => consumer.name === harness.subjects.inboundConsumer)?.cluster?.leader;
    };
    await waitFor(async () => (await consumerLeader()) !== undefined, 10_000, "the inbound consumer's leader");
    const publish = async (sessionId: number, clientMsgId: string) => {
      await waitFor(
        () =>
          harness.publish(sessionId, clientMsgId).then(
            () => true,
            () => false,
          ),
        30_000,
        `NATS to take ${clientMsgId}`,
      );
    };
    return { servers, first, live: harness, consumerLeader, publish, close };
  } catch (error) {
    await close();
    throw error;
  }
}
