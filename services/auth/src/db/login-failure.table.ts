import type { ColumnType } from 'kysely';

/** Failed logins per throttle key, shared by every auth replica (login-throttle.ts). */
export interface LoginFailureTable {
  /** A hash of the throttle's scope and the key (a username, a client address): never the key itself. */
  key: string;
  /** Failures in the window that ends at reset_at. */
  failures: number;
  reset_at: ColumnType<Date, Date | string, Date | string>;
}
