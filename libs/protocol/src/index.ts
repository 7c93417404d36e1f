export {
  type BusErrorCode as BusErrorCodeType,
  BusErrorCode,
  busErrorSchema,
  type ConfirmedEvent,
  confirmedEventSchema,
  type DeadLetter,
  deadLetterSchema,
  type InboundMessage,
  inboundMessageId,
  inboundMessageSchema,
  type PersistenceApi,
  type PersistenceReply,
  type PersistenceRequest,
  persistenceApi,
  SESSION_HEADS_MAX,
  type SessionWithSeq,
  sessionHeadsPerRequest,
} from './bus.js';
export { CloseCode, ErrorCode } from './errors.js';
export {
  type ClientFrame,
  type ClientFrameOf,
  type ClientFrameType,
  clientFrameSchemas,
  contentLength,
  decodeClientFrame,
  describeIssues,
  FrameError,
  HISTORY_DEFAULT_LIMIT,
  HISTORY_MAX_LIMIT,
  PROTOCOL_VERSION,
  type ReqId,
  readFrameIds,
  type ServerFrame,
} from './frames.js';
export {
  clientMsgIdSchema,
  idSchema,
  type Message,
  messageSchema,
  SESSION_STATUSES,
  type Session,
  seqSchema,
  sessionSchema,
} from './model.js';
export { isRole, ROLES, type Role } from './roles.js';
export { createSubjects, INBOUND_PARTITIONS, PERSISTENCE_ENDPOINTS, type PersistenceEndpoint, type Subjects } from './subjects.js';
