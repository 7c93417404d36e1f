/** Types of permissions.mjs, for the TypeScript test that imports it. */
export type NatsUser = 'auth' | 'persistence' | 'gateway' | 'status';

export interface UserPermissions {
  publish: string[];
  subscribe: string[];
}

export declare const USERS: NatsUser[];
export declare function passwordVariable(user: NatsUser): string;
export declare function servicePermissions(prefix?: string): Record<NatsUser, UserPermissions>;
export declare function renderAuthConf(prefix?: string): string;
