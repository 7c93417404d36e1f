/** SQLSTATEs of a connection lost or refused: class 08, the server shutting down or ending the session, too many clients. */
const CONNECTION_SQLSTATE = /^(08|57P0[1-5]|53300)/;
/**
 * Node's codes for a host that cannot be reached or resolved (a database's DNS name does not
 * resolve while its container restarts). Node's `AggregateError` for a name with several
 * addresses carries the code with an empty message.
 */
const NETWORK_CODE = /^E(CONNREFUSED|CONNRESET|CONNABORTED|TIMEDOUT|PIPE|NOTFOUND|AI_AGAIN|HOSTUNREACH|NETUNREACH)$/;
/** pg's own errors for a connection it lost, could not make in time, or will not use again. */
const CONNECTION_MESSAGE =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|timeout exceeded when trying to connect|Connection terminated|Query read timeout|not queryable/i;

/** Errors that mean the database is unreachable, rather than that one query was wrong. */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (CONNECTION_SQLSTATE.test(code) || NETWORK_CODE.test(code))) return true;
  return CONNECTION_MESSAGE.test(error.message);
}
