/** SQLSTATEs of a connection lost or refused: class 08, the server shutting down or ending the session, too many clients. */
const CONNECTION_SQLSTATE = /^(08|57P0[1-5]|53300)/;
/**
 * Node's codes for a host that cannot be reached or resolved (a database's DNS name does not
 * resolve while its container restarts). Node's `AggregateError` for a name with several
 * addresses carries the code with an empty message.
 */
const NETWORK_CODE = /^E(CONNREFUSED|CONNRESET|CONNABORTED|TIMEDOUT|PIPE|NOTFOUND|AI_AGAIN|HOSTUNREACH|NETUNREACH)$/;
/** The form of a SQLSTATE: five digits or capital letters. */
const SQLSTATE = /^[0-9A-Z]{5}$/;
/** pg's own errors for a connection it lost, could not make in time, or will not use again. */
const CONNECTION_MESSAGE =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|timeout exceeded when trying to connect|Connection terminated|Query read timeout|not queryable/i;

/** A read-only transaction was asked to write: the server is a hot standby (a primary demoted in a failover) or set read-only. */
export const READ_ONLY_SQLSTATE = '25006';
/**
 * SQLSTATEs of a server that cannot take the statement now, whatever the statement: read-only,
 * insufficient resources (class 53: 53100 disk full, 53200 out of memory, 53300 too many
 * connections), a system error (class 58: 58030 I/O error, a data file missing) or the server
 * shutting down (57P0x). All clear on the server's side (a failover completes, space is freed),
 * and sending the same statement then succeeds.
 *
 * Not 53400 (configuration_limit_exceeded): that is the statement going past a configured
 * limit, such as `temp_file_limit`, and the same statement goes past it every time. Taken for
 * the server being unavailable, such a batch would be retried for ever and hold up every message
 * behind it; as an error of the statement, it is split and only the message that cannot be
 * stored is set aside.
 */
const UNAVAILABLE_SQLSTATE = /^(25006$|53(?!400$)|58|57P0)/;

/** The `code` of an error: PostgreSQL's SQLSTATE for what the server refused, Node's for a network failure. */
export function errorCode(error: unknown): string | undefined {
  const code = error instanceof Error ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/** Set by `createDb`'s pool on what failed to open a connection. */
const CONNECT_FAILURE = Symbol('connect failure');

/** Marks `error` as a failure to open a connection (`isConnectFailure`), and returns it. */
export function markConnectFailure(error: unknown): unknown {
  if (error instanceof Error) Object.defineProperty(error, CONNECT_FAILURE, { value: true });
  return error;
}

/**
 * No connection of `createDb`'s pool could be opened for the statement, whatever the reason: the
 * database unreachable (`isConnectionError` too), but also a login refused after the role's
 * password was rotated or its LOGIN revoked (SQLSTATE class 28), a server certificate expired, the
 * process out of file descriptors. None says anything of the statement, which was never sent: a
 * service at work waits such a failure out, as it does `isDatabaseUnavailable`. Its start does
 * not wait: a wrong password there fails it at once.
 */
export function isConnectFailure(error: unknown): boolean {
  return error instanceof Error && Object.hasOwn(error, CONNECT_FAILURE);
}

/**
 * What a service at work waits out, whatever the statement: the database unavailable
 * (`isDatabaseUnavailable`), or no connection to be had for it (`isConnectFailure`). A start
 * waits for `isDatabaseUnavailable` alone, so that a wrong password there fails it at once.
 */
export function isPassingFailure(error: unknown): boolean {
  return isDatabaseUnavailable(error) || isConnectFailure(error);
}

/** Errors that mean the database is unreachable, rather than that one query was wrong. */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = errorCode(error);
  if (code !== undefined && (CONNECTION_SQLSTATE.test(code) || NETWORK_CODE.test(code))) return true;
  // What the server refused says what it is by its SQLSTATE: its message may quote the statement's
  // input (`invalid input syntax for type integer: "ECONNRESET"`), which a guess from the message
  // took for a lost connection, to be retried for ever.
  if (code !== undefined && SQLSTATE.test(code)) return false;
  return CONNECTION_MESSAGE.test(error.message);
}

/**
 * The connection lost or refused (the server shutting down included: `isConnectionError`), or the
 * server read-only (a standby): a state of the server or the connection, never of the statement.
 * A connection that met one is not used again, and a migration that met one is waited out.
 */
export function isLostOrReadOnly(error: unknown): boolean {
  return isConnectionError(error) || errorCode(error) === READ_ONLY_SQLSTATE;
}

/**
 * Errors that mean the database cannot take writes now: unreachable (`isConnectionError`), or
 * reachable but read-only, out of disk or memory, failing its I/O or shutting down. What failed
 * this way should be tried again later, never taken for a statement the database refuses.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (isConnectionError(error)) return true;
  const code = errorCode(error);
  return code !== undefined && UNAVAILABLE_SQLSTATE.test(code);
}
