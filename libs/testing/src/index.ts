export { postJson } from './auth-api.js';
export {
  type AckRecord,
  type AttemptRecord,
  type CheckCounts,
  type CheckInput,
  type CheckReport,
  checkDelivery,
  type DeliveredRecord,
  formatReport,
  readStored,
  type SessionRow,
  type StoredRow,
  type StrayRecord,
  type TranscriptRecord,
} from './checker.js';
export {
  createTestDatabase,
  fillHistory,
  lockWaits,
  query,
  serverVersion,
  TEST_DATABASE_ADMIN_URL,
  type TestDatabase,
  withPgClient,
} from './database.js';
export { LoadClient, type LoadClientOptions } from './load-client.js';
export { refusePoison, removeSlowInserts, slowInserts } from './message-triggers.js';
export { metric, metricValue } from './metrics.js';
export { type JetStreamInfo, NatsServer, natsServerBinary } from './nats-server.js';
export { deleteInboundStream, TEST_NATS_URL } from './nats-streams.js';
export { PendingReplies } from './pending-replies.js';
export { canListen, freePort, holdPort } from './ports.js';
export { type RawWsClient, rawWsClient } from './raw-ws-client.js';
export { type ReliableSendOptions, sendReliably } from './reliable-send.js';
export {
  httpStatus,
  REPO_ROOT,
  type ServiceName,
  type ServiceProcess,
  type StartServiceOptions,
  startProcess,
  startService,
  uniqueSubjectPrefix,
  waitFor,
} from './service-process.js';
export { passwordOf, type Stack, type StackOptions, startStack } from './stack.js';
export { type StartThroughOutages, startThroughOutages } from './start-through-outages.js';
export { TcpProxy } from './tcp-proxy.js';
export { type Frame, TestClient, type TestClientOptions, TestClients } from './ws-client.js';
