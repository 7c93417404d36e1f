/** For the all-in-one process: the auth service as a library. */
export { checkAccount } from './account-check.js';
export { type AuthService, type AuthServiceOptions, openAuthDatabase, startAuthService } from './app.js';
export { type AuthConfig, loadAuthConfig } from './config.js';
export type { AuthDatabase } from './db/schema.js';
export { passwordSchema, usernameSchema } from './http/schemas.js';
