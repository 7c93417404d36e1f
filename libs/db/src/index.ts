export { errorCode, isConnectFailure, isConnectionError, isDatabaseUnavailable, isPassingFailure } from './connection-errors.js';
export { type CreateDbOptions, createDb, type Database, withDb } from './create-db.js';
export { createEmbeddedDb } from './embedded-db.js';
export { type MigrateOptions, migrateToLatest } from './migrate.js';
export { openWhenReachable } from './open-when-reachable.js';
export { type ConnectionSettings, prepared } from './prepared.js';
