export { type CreateDbOptions, createDb, type Database, isConnectionError } from './create-db.js';
export { type MigrateOptions, migrateToLatest } from './migrate.js';
