export { createTestDatabase, TEST_DATABASE_ADMIN_URL, type TestDatabase } from './database.js';
export { freePort } from './ports.js';
export { type ReliableSendOptions, sendReliably } from './reliable-send.js';
export {
  REPO_ROOT,
  type ServiceName,
  type ServiceProcess,
  type StartServiceOptions,
  startProcess,
  startService,
  uniqueSubjectPrefix,
  waitFor,
} from './service-process.js';
export { type Stack, type StackOptions, startStack } from './stack.js';
export { type Frame, TestClient, type TestClientOptions } from './ws-client.js';
