export type {
  Bus,
  BusSubscription,
  DurableConsumer,
  DurableMessage,
  DurablePull,
  EndpointSpec,
  InboundStreamSettings,
  RegisteredService,
  ServiceSpec,
} from './bus.js';
export { BusError, ErrorAnswer } from './bus.js';
export { Deadlines } from './deadlines.js';
export { decodeJson, encodeJson } from './json.js';
export { createMemoryBus, subjectMatches } from './memory-bus.js';
export { type ConnectNatsBusOptions, connectNatsBus, type NatsBusOptions, natsConnectOptions, withoutCredentials } from './nats-bus.js';
export { createPersistenceClient, DEFAULT_REQUEST_TIMEOUT_MS, jsonEndpoint, type PersistenceClient, requestJson } from './rpc.js';
