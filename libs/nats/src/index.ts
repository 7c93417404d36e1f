export { type ConnectNatsOptions, connectNats, type NatsClient } from './connect.js';
export { decodeJson, encodeJson } from './json.js';
export {
  addJsonEndpoint,
  BusError,
  createPersistenceClient,
  DEFAULT_REQUEST_TIMEOUT_MS,
  type PersistenceClient,
  requestJson,
} from './rpc.js';
