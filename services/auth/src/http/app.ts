import cors from '@fastify/cors';
import { isPassingFailure } from '@switchboard/db';
import type { Logger } from '@switchboard/logging';
import { describeIssues, hasLoneSurrogate, isStorableText } from '@switchboard/protocol';
import { ConcurrencyLimitError, settlesWithin } from '@switchboard/runtime';
import { TokenError, TokenErrorCode, type TokenVerifier } from '@switchboard/tokens';
import { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, fastify } from 'fastify';
import type { Kysely } from 'kysely';
import type { z } from 'zod';
import type { AuthDatabase } from '../db/schema.js';
import {
  findUserById,
  findUserByUsername,
  insertUser,
  UsernameTakenError,
  updateUserAsAdmin,
  upsertExternalUser,
} from '../db/user.repository.js';
import type { UserRow } from '../db/user.table.js';
import type { LoginThrottle } from '../login-throttle.js';
import type { AuthMetrics } from '../metrics.js';
import type { PasswordHasher } from '../passwords.js';
import type { TokenIssuer, TokenResponse } from '../token/access-tokens.js';
import { bearerCredential, createApiKeyChecker } from './api-keys.js';
import { requestAddressKey } from './client-address.js';
import { errorBody, HttpError, HttpErrorCode } from './errors.js';
import { createUserBody, serviceTokenBody, tokenBody, updateUserBody, userIdParams } from './schemas.js';

/** Contract: bodies over 16 KiB are refused. */
export const BODY_LIMIT_BYTES = 16 * 1024;
/**
 * A request whose body has not all come within this long is answered 408 by Node (a bare status,
 * no JSON body) and its connection closed. Fastify's default is none, which also turns off
 * Node's own limit: a client that stops halfway through a body held its connection for ever.
 */
export const REQUEST_TIMEOUT_MS = 10_000;
/** Seconds a client is asked to wait after a 503 (the database unreachable). */
export const RETRY_AFTER_UNAVAILABLE_S = 5;

/** Seconds a client is asked to wait after a 503 for too many password checks at once. */
export const RETRY_AFTER_BUSY_S = 1;

/** Seconds a client is asked to wait after a 503 from a replica that is stopping (another takes it). */
export const RETRY_AFTER_STOPPING_S = 1;

export interface HttpAppOptions {
  db: Kysely<AuthDatabase>;
  /** Hashes and checks passwords, a bounded number at a time. */
  passwords: PasswordHasher;
  tokens: TokenIssuer;
  /** Verifies bearer tokens presented to the API itself (an admin creating agents). */
  verifier: TokenVerifier;
  /** The JWKS, read again first where another replica may have recorded a key since. */
  jwks: () => Promise<unknown>;
  apiKeys: readonly string[];
  /**
   * Failed login attempts keyed by username and client address together, by username alone
   * (every address), and by client address; successful logins by username; self-registrations by
   * client address.
   */
  throttles: { user: LoginThrottle; account: LoginThrottle; address: LoginThrottle; successes: LoginThrottle; registration: LoginThrottle };
  metrics: AuthMetrics;
  logger: Logger;
  /** Fastify's trustProxy: false, true, or the trusted proxies' addresses. */
  trustProxy: boolean | string[];
  corsOrigins: readonly string[];
  /** ADMIN_USERNAME, if set: that account's role, state and password follow the configuration, not the API. */
  bootstrapAdmin?: string | undefined;
  /**
   * Tells the gateways that the user's tokens below `tokenVersion` are no longer to be accepted:
   * called once an account is disabled, or its role or password changed.
   */
  revokeTokens?: (userId: number, tokenVersion: number) => void;
}

const toUserBody = (user: UserRow) => ({
  id: user.id,
  username: user.username,
  role: user.role,
  display_name: user.display_name,
});

/**
 * How long a login's answer waits, where the database may be failing, for its throttle counts to
 * be taken back: the statements go on after it, but a hung one must not double the wait for a 503.
 */
const TAKE_BACK_WAIT_MS = 1_000;

/** Builds the auth HTTP API (contract §2). Only `app.ts` of the service listens. */
export function buildHttpApp(options: HttpAppOptions): FastifyInstance {
  const { db, passwords, tokens, verifier, jwks, throttles, metrics, logger } = options;
  const tooBusy = () =>
    new HttpError(HttpErrorCode.Unavailable, 'too many password checks at once; retry shortly', {
      'retry-after': String(RETRY_AFTER_BUSY_S),
    });
  const isKnownApiKey = createApiKeyChecker(options.apiKeys);

  const app = fastify({
    loggerInstance: logger.child({ module: 'http' }) as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    requestTimeout: REQUEST_TIMEOUT_MS,
    // Node looks for requests past their time every 30 s by default: every second instead.
    http: { connectionsCheckingInterval: 1_000 },
    trustProxy: options.trustProxy,
    // Requests that come in while the server closes (pipelined, or on a busy keep-alive
    // connection) are refused by the hook below, in the API's error shape: Fastify's own 503
    // answers with a body of another shape and no Retry-After.
    return503OnClosing: false,
  });

  // Bearer tokens, no cookies: browsers on other origins (the demo page on the gateway) may call the API.
  // Retry-After is exposed: a browser hides every response header outside a short list otherwise,
  // and a page could not read how long a 429 or 503 asks it to wait.
  void app.register(cors, {
    origin: options.corsOrigins.includes('*') ? true : [...options.corsOrigins],
    methods: ['GET', 'POST', 'PATCH'],
    exposedHeaders: ['Retry-After'],
  });
  // JSON bodies only (415 otherwise): Fastify reads text/plain by itself, and such a body was refused 400 as not an object.
  app.removeContentTypeParser('text/plain');

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  // Once CORS is registered, so that its hook runs first: a browser on another origin can read the 503.
  app.after(() => {
    app.addHook('onRequest', async (_request, reply) => {
      if (!closing) return;
      return reply
        .code(HttpErrorCode.Unavailable.status)
        .headers({ connection: 'close', 'retry-after': String(RETRY_AFTER_STOPPING_S) })
        .send(errorBody(HttpErrorCode.Unavailable.code, 'this replica is stopping; retry'));
    });
  });

  app.setValidatorCompiler(({ schema }) => (data) => {
    const result = (schema as z.ZodType).safeParse(data);
    return result.success ? { value: result.data } : { error: new Error(describeIssues(result.error)) };
  });

  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send(errorBody('not_found', `no route for ${request.method} ${request.url.split('?')[0]}`)),
  );

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof HttpError) {
      return reply.code(error.kind.status).headers(error.headers).send(errorBody(error.kind.code, error.message));
    }
    if (error.validation) {
      return reply.code(400).send(errorBody(HttpErrorCode.InvalidBody.code, error.message.replace(/^body\/?\s*/, '')));
    }
    switch (error.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return reply.code(413).send(errorBody(HttpErrorCode.PayloadTooLarge.code, `body over ${BODY_LIMIT_BYTES} bytes`));
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return reply.code(415).send(errorBody(HttpErrorCode.UnsupportedMediaType.code, 'send application/json'));
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return reply.code(400).send(errorBody(HttpErrorCode.InvalidBody.code, 'body is empty'));
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      // Fastify's own client errors: malformed JSON and the like.
      return reply.code(error.statusCode).send(errorBody(HttpErrorCode.InvalidBody.code, error.message));
    }
    if (isPassingFailure(error)) {
      // PostgreSQL is unreachable, did not answer in time, cannot take writes now (read-only
      // after a failover, a full disk), or refused a new connection (a rotated password): the
      // request may succeed later.
      request.log.warn({ err: error }, 'database unavailable');
      return reply
        .code(HttpErrorCode.Unavailable.status)
        .header('retry-after', String(RETRY_AFTER_UNAVAILABLE_S))
        .send(errorBody(HttpErrorCode.Unavailable.code, 'the database is unavailable; retry later'));
    }
    request.log.error({ err: error }, 'request failed');
    return reply.code(500).send(errorBody(HttpErrorCode.Internal.code, 'internal error'));
  });

  // For load balancers that check the serving port itself (the AWS load balancer controller and
  // GKE's ingress ask `/` for a 200 unless told a path): the process answers, nothing more.
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/.well-known/jwks.json', async (_request, reply) => reply.header('cache-control', 'public, max-age=300').send(await jwks()));

  /**
   * Takes counts back (a login's, a sign-up's), logging any that fails: a statement failing here
   * must not replace the answer the request is getting. `bounded` where the database may be
   * failing: the answer waits TAKE_BACK_WAIT_MS for them at most (they go on after), not a hung
   * statement's 10 s.
   */
  const takeBack = async (pairs: readonly (readonly [LoginThrottle, string])[], bounded = false) => {
    const done = Promise.allSettled(pairs.map(([throttle, key]) => throttle.forgive(key))).then((outcomes) => {
      for (const outcome of outcomes)
        if (outcome.status === 'rejected') logger.warn({ err: outcome.reason }, 'taking back a throttle count failed');
    });
    await (bounded ? settlesWithin(done, TAKE_BACK_WAIT_MS) : done);
  };

  /**
   * The admin the bearer token is of, by the role stored now, or undefined when it is no admin's
   * (or a disabled one's); throws 401 (or 503) for one that does not verify.
   */
  const currentAdmin = async (credential: string): Promise<UserRow | undefined> => {
    const caller = await verifier.verify(credential).catch((error: unknown) => {
      if (error instanceof TokenError && error.code === TokenErrorCode.Unavailable) {
        throw new HttpError(HttpErrorCode.Unavailable, 'signing keys are unavailable; retry later', {
          'retry-after': String(RETRY_AFTER_UNAVAILABLE_S),
        });
      }
      throw new HttpError(HttpErrorCode.Unauthorized, 'bearer token is invalid or expired');
    });
    // The role stored now, not the token's: an admin demoted since the token was issued (a
    // service token minted again with another role) must not keep an admin's power until it expires.
    // A disabled admin's tokens no longer administer anything either, nor one revoked since (a
    // new password after a token leaked: its version is below the account's).
    const stored = caller.role === 'admin' ? await findUserById(db, caller.userId) : undefined;
    return stored?.role === 'admin' && stored.disabled_at === null && caller.tokenVersion >= stored.token_version ? stored : undefined;
  };
  const isCurrentAdmin = async (credential: string) => (await currentAdmin(credential)) !== undefined;

  app.post('/v1/users', { schema: { body: createUserBody } }, async (request, reply) => {
    const body = request.body as z.infer<typeof createUserBody>;
    const { authorization } = request.headers;
    const credential = bearerCredential(authorization);
    // A header of another form (`Bearer ` with an empty token, `Basic …`) is no token that
    // verifies: taken for none, an admin tool whose token variable was empty signed customers up.
    if (authorization !== undefined && credential === undefined)
      throw new HttpError(HttpErrorCode.Unauthorized, 'Authorization must be "Bearer <token>"');
    if (body.role !== 'user') {
      if (credential === undefined) {
        throw new HttpError(HttpErrorCode.Forbidden, `creating a user with role ${body.role} needs an admin's bearer token`);
      }
      if (!(await isCurrentAdmin(credential)))
        throw new HttpError(HttpErrorCode.Forbidden, `only an admin may create a user with role ${body.role}`);
    }
    let signUpKey: string | undefined;
    // A bearer token that does not verify gets 401, as for staff: taken for none, an admin tool
    // whose token had expired created customers as sign-ups until the limit refused it.
    if (body.role === 'user' && (credential === undefined || !(await isCurrentAdmin(credential)))) {
      // Self-registration costs a password hash (argon2id, about 19 MiB and tens of milliseconds):
      // counted per client address before hashing, so that no one can spend the service's CPU on it.
      // An admin creating customers is not signing up.
      signUpKey = requestAddressKey(request.ip, request.socket.remoteAddress);
      const retryAfter = throttles.registration.refusedFor(signUpKey) || (await throttles.registration.attempt([signUpKey]));
      if (retryAfter > 0) {
        throw new HttpError(HttpErrorCode.TooManyRequests, 'too many registrations from this address; try again later', {
          'retry-after': String(retryAfter),
        });
      }
    }
    let passwordHash: string;
    try {
      passwordHash = await passwords.hash(body.password);
    } catch (error) {
      if (!(error instanceof ConcurrencyLimitError)) throw error;
      // Refused before any hashing: it costs the address none of its sign-ups.
      if (signUpKey !== undefined) await takeBack([[throttles.registration, signUpKey]], true);
      throw tooBusy();
    }
    try {
      const user = await insertUser(db, { username: body.username, passwordHash, role: body.role, displayName: body.display_name ?? null });
      metrics.usersCreated.inc({ role: user.role });
      return reply.code(201).send(toUserBody(user));
    } catch (error) {
      // A name taken was a sign-up tried (and counts, against guessing which names exist).
      if (error instanceof UsernameTakenError) throw new HttpError(HttpErrorCode.UsernameTaken, 'username is taken');
      // One the database failed (a 503, retried as told) costs the address none of its sign-ups,
      // as a login the database failed costs no attempt. (A statement timed out on the client may
      // still commit: the account then exists, uncounted, once.)
      if (signUpKey !== undefined && isPassingFailure(error)) await takeBack([[throttles.registration, signUpKey]], true);
      throw error;
    }
  });

  // Responses that carry a token are not to be kept by any cache (RFC 6749 §5.1).
  const noStore = async (_request: FastifyRequest, reply: FastifyReply) => {
    reply.header('cache-control', 'no-store');
  };

  app.post('/v1/token', { schema: { body: tokenBody }, onRequest: noStore }, async (request) => {
    const { username, password } = request.body as z.infer<typeof tokenBody>;
    const accountKey = username.toLowerCase();
    const addressKey = requestAddressKey(request.ip, request.socket.remoteAddress);
    // A name is locked per address (LOGIN_MAX_FAILURES), so that guessing from one address cannot
    // lock its owner out everywhere; and, far higher, across all addresses, against guessing spread
    // over many (LOGIN_MAX_FAILURES_PER_USERNAME). Its successful logins are counted too
    // (LOGIN_MAX_SUCCESSES_PER_USERNAME): each costs a password check like a failure, and anyone
    // can sign up, so one account logging in in a loop would otherwise fill the checks' queue
    // and have every other login answered 503.
    const userKey = `${accountKey}\u0000${addressKey}`;
    const counted = [
      [throttles.user, userKey],
      [throttles.account, accountKey],
      [throttles.address, addressKey],
      [throttles.successes, accountKey],
    ] as const;
    // One answer whichever key refused: which one would tell a guesser that the name exists and is in use.
    const throttled = (retryAfter: number) => {
      metrics.logins.inc({ outcome: 'throttled' });
      return new HttpError(HttpErrorCode.TooManyRequests, 'too many logins; try again later', { 'retry-after': String(retryAfter) });
    };
    // Refused before any statement while a key is known to be over its limit.
    const known = Math.max(...counted.map(([throttle, key]) => throttle.refusedFor(key)));
    if (known > 0) throw throttled(known);
    // Counted before the (slow) password check, so concurrent requests cannot all slip past the limit.
    const counts = await Promise.allSettled(counted.map(([throttle, key]) => throttle.attempt([key])));
    const failedCount = counts.find((count) => count.status === 'rejected');
    if (failedCount) {
      // The database failing under the counts: those that were made are taken back.
      await takeBack(
        counted.filter((_, i) => counts[i]?.status === 'fulfilled'),
        true,
      );
      throw failedCount.reason;
    }
    const retryAfter = Math.max(...counts.map((count) => (count.status === 'fulfilled' ? count.value : 0)));
    if (retryAfter > 0) {
      // A refused attempt guessed nothing: it counts against no key (a blocked address cannot lock out users).
      await takeBack(counted);
      throw throttled(retryAfter);
    }
    let user: UserRow | undefined;
    let matches: boolean;
    try {
      // A username PostgreSQL cannot even look up (a NUL) belongs to no one: a wrong credential, not a 500.
      user = isStorableText(username) ? await findUserByUsername(db, username) : undefined;
      // A password with a lone surrogate is refused at sign-up: one given here matches none, even
      // where its hash (of U+FFFD in its place) would.
      matches = (await passwords.verify(user?.password_hash, password)) && !hasLoneSurrogate(password);
    } catch (error) {
      // Nothing was checked (the checks' queue full, the database failing the lookup): like a
      // throttled attempt, it counts against no key. Before, a login answered 503 while the
      // database was failing counted as a failed one, and a user retrying as told was locked out.
      const busy = error instanceof ConcurrencyLimitError;
      await takeBack(counted, !busy);
      if (!busy) throw error;
      metrics.logins.inc({ outcome: 'busy' });
      throw tooBusy();
    }
    // A disabled account's right password is answered as a wrong one: nothing tells a guesser
    // which names exist, or which passwords were right.
    if (!matches || !user || user.disabled_at !== null) {
      // A failure counts against the failures' keys, not the name's successes.
      await takeBack([[throttles.successes, accountKey]], true);
      metrics.logins.inc({ outcome: 'failure' });
      throw new HttpError(HttpErrorCode.InvalidCredentials, 'wrong username or password');
    }
    // A success costs its address nothing: many users log in from one address (an office behind NAT).
    // It clears the name's failures from this address only: elsewhere, someone may still be guessing.
    // The password was right: a failure to do so is logged, and the token issued all the same.
    await Promise.all([
      throttles.user.reset(userKey).catch((error: unknown) => logger.warn({ err: error }, 'clearing login counts failed')),
      takeBack([
        [throttles.account, accountKey],
        [throttles.address, addressKey],
      ]),
    ]);
    let token: TokenResponse;
    try {
      token = await tokens.issue(user);
    } catch (error) {
      // No token: the login is not counted as one of the name's successes.
      await takeBack([[throttles.successes, accountKey]], true);
      throw error;
    }
    metrics.logins.inc({ outcome: 'success' });
    metrics.tokensIssued.inc({ kind: 'password' });
    return token;
  });

  // The API key is checked before the body is read: a caller without one learns nothing of the schema.
  const requireApiKey = async (request: FastifyRequest) => {
    const credential = bearerCredential(request.headers.authorization);
    if (credential === undefined || !isKnownApiKey(credential)) {
      metrics.tokensIssued.inc({ kind: 'service_refused' });
      throw new HttpError(HttpErrorCode.Unauthorized, 'missing or wrong API key');
    }
  };

  app.post('/v1/service-token', { schema: { body: serviceTokenBody }, onRequest: [noStore, requireApiKey] }, async (request) => {
    const body = request.body as z.infer<typeof serviceTokenBody>;
    const { user, revoked } = await upsertExternalUser(db, {
      externalId: body.external_id,
      role: body.role,
      displayName: body.display_name,
    });
    // Its tokens of the old role stop working on the gateways, as after a PATCH with a new role.
    if (revoked) options.revokeTokens?.(user.id, user.token_version);
    // The backend knows its users, and is told this one was disabled here.
    if (user.disabled_at !== null) throw new HttpError(HttpErrorCode.Forbidden, 'this user is disabled');
    metrics.tokensIssued.inc({ kind: 'service' });
    return tokens.issue(user);
  });

  app.patch('/v1/users/:id', { schema: { params: userIdParams, body: updateUserBody } }, async (request) => {
    const { id } = request.params as z.infer<typeof userIdParams>;
    const body = request.body as z.infer<typeof updateUserBody>;
    const credential = bearerCredential(request.headers.authorization);
    if (credential === undefined) throw new HttpError(HttpErrorCode.Unauthorized, "changing an account needs an admin's bearer token");
    const admin = await currentAdmin(credential);
    if (!admin) throw new HttpError(HttpErrorCode.Forbidden, 'only an admin may change an account');
    const target = await findUserById(db, id);
    if (!target) throw new HttpError(HttpErrorCode.NotFound, `no user ${id}`);
    const demotes = body.disabled === true || (body.role !== undefined && body.role !== 'admin');
    // At least one admin stays able to administer: not the one asking, who could lock everyone out.
    if (target.id === admin.id && demotes)
      throw new HttpError(HttpErrorCode.InvalidBody, 'an admin cannot disable or demote their own account');
    // The bootstrap admin is what ADMIN_USERNAME and ADMIN_PASSWORD say at each start: demoted
    // here, the next start refused to run (its name held by a non-admin), and disabled or given
    // another password, the configuration's recovery of an admin no longer worked.
    const bootstrap = options.bootstrapAdmin;
    if (
      bootstrap !== undefined &&
      target.external_id === null &&
      target.username.toLowerCase() === bootstrap.toLowerCase() &&
      (demotes || body.password !== undefined)
    )
      throw new HttpError(
        HttpErrorCode.InvalidBody,
        'the bootstrap admin follows ADMIN_USERNAME and ADMIN_PASSWORD: change them there (only display_name changes here)',
      );
    // A service user's role follows its backend at each /v1/service-token, and it has no password.
    if (target.external_id !== null && (body.password !== undefined || body.role !== undefined))
      throw new HttpError(
        HttpErrorCode.InvalidBody,
        'a user of /v1/service-token takes its role from its backend and has no password: only display_name and disabled change',
      );
    let passwordHash: string | undefined;
    if (body.password !== undefined) {
      try {
        passwordHash = await passwords.hash(body.password);
      } catch (error) {
        if (error instanceof ConcurrencyLimitError) throw tooBusy();
        throw error;
      }
    }
    // Made only if the caller is still an enabled admin, checked under a lock on both rows: two
    // admins removing each other at once leave one of them (see updateUserAsAdmin).
    const result = await updateUserAsAdmin(db, {
      adminId: admin.id,
      id,
      changes: {
        ...(passwordHash === undefined ? {} : { passwordHash }),
        ...(body.role === undefined ? {} : { role: body.role }),
        ...(body.display_name === undefined ? {} : { displayName: body.display_name }),
        ...(body.disabled === undefined ? {} : { disabled: body.disabled }),
      },
    });
    if (result.outcome === 'not_admin') throw new HttpError(HttpErrorCode.Forbidden, 'only an admin may change an account');
    if (result.outcome === 'not_found') throw new HttpError(HttpErrorCode.NotFound, `no user ${id}`);
    const updated = result.user;
    // A change that revoked the account's tokens raised its version (updateUser): the gateways
    // close the sockets that use an older one and refuse them from now on.
    if (result.revoked) options.revokeTokens?.(id, updated.token_version);
    logger.info(
      { userId: id, by: admin.id, changed: Object.keys(body).filter((key) => body[key as keyof typeof body] !== undefined) },
      'account changed by an admin',
    );
    return { ...toUserBody(updated), disabled: updated.disabled_at !== null };
  });

  return app;
}
