import { type Bus, BusError, type BusSubscription, decodeJson, encodeJson, type PersistenceClient } from '@switchboard/bus';
import type { Logger } from '@switchboard/logging';
import {
  confirmedEventSchema,
  deadLetterSchema,
  ErrorCode,
  FrameError,
  type InboundMessage,
  inboundMessageId,
  MAX_PAYLOAD_HEADROOM_BYTES,
  type Message,
  type ReqId,
  type ServerFrame,
  type Subjects,
  sessionHeadsPerRequest,
  withReqId,
} from '@switchboard/protocol';
import type { GatewayMetrics } from '../metrics.js';

/** A socket, as the hub sees it. */
export interface Subscriber {
  readonly id: string;
  send(frame: ServerFrame): void;
  /** Sends a frame already encoded as JSON (events are encoded once, to UTF-8, for all their sockets). */
  sendEncoded(data: string | Buffer, type: ServerFrame['type']): void;
  /**
   * Resolves once what it was sent has left and the client has read enough of it to take more (or
   * is gone, or has been closed as too slow): replays wait for it between pages.
   */
  caughtUp(): Promise<void>;
}

/** Messages fetched per request when replaying or filling a gap. */
export const CATCH_UP_PAGE = 500;
/**
 * Out-of-order events held per session: a gap fill is forced at this many, and events beyond it
 * are dropped (the fill fetches them from persistence; see `Channel.overflowed`).
 */
export const MAX_EARLY_EVENTS = 1_000;
/**
 * Live events queued per member while its join replays. The replay fetches until the member has
 * everything the session has delivered, so the events dropped beyond this are fetched with it.
 */
export const MAX_QUEUED_EVENTS = 1_000;
export const PUBLISH_TIMEOUT_MS = 5_000;
/** The longest a session's fill that keeps failing waits before it is tried again (from the retry delay, doubling), unless that delay is longer. */
export const MAX_FILL_RETRY_MS = 5_000;

interface MemberState {
  /** Highest seq this socket has been sent. */
  cursor: number;
  /** While replaying history after a join, live events wait here (made when the first one arrives; at most MAX_QUEUED_EVENTS). */
  replaying: boolean;
  queued: Message[] | undefined;
}

interface Channel {
  readonly sessionId: number;
  /** Resolves once the subscription is registered, so nothing published afterwards is missed. */
  readonly subscription: Promise<BusSubscription>;
  /** Sockets joined plus sends in flight: the subscription lives while this is above 0. */
  refs: number;
  readonly members: Map<Subscriber, MemberState>;
  /** Highest seq dispatched to members, in order; undefined while no member has joined. */
  lastSeq: number | undefined;
  /**
   * Joins in progress. While the first of them has not read the session's position (`lastSeq` is
   * undefined), events are held in `early` rather than dropped: one committed after that read
   * can arrive before its answer.
   */
  joining: number;
  /** Events that arrived ahead of a missing seq, or before the first join knew where to start. */
  readonly early: Map<number, Message>;
  /**
   * An event was dropped because `early` was full. A fill is then due even once `early` has
   * drained (a late event can close the gap before it): only a fill fetches the dropped one.
   */
  overflowed: boolean;
  gapTimer: NodeJS.Timeout | undefined;
  /** The grace after a check of the heads found the session behind (see `catchUpTo`); apart from `gapTimer`, which it must not hold back. */
  headTimer: NodeJS.Timeout | undefined;
  filling: boolean;
  /** A fill was asked for while one ran: it may have read its last page before what it must fetch was stored. */
  fillAgain: boolean;
  /** This session's fills failed in a row: the next waits longer (see `MAX_FILL_RETRY_MS`). */
  fillFailures: number;
}

export interface SessionHubOptions {
  bus: Bus;
  subjects: Subjects;
  persistence: PersistenceClient;
  logger: Logger;
  metrics: GatewayMetrics;
  gapWaitMs: number;
  /** How often the hub compares its sessions' positions with the database's (`checkHeads`); 0: never by itself. */
  headsCheckIntervalMs?: number;
  /** How long a session found behind the database waits for its events before they are fetched. */
  headGraceMs?: number;
}

/**
 * Every this often, the hub asks persistence for the last seq of each session it delivers
 * (`checkHeads`). A confirmed event travels over core NATS, at most once: one lost without a
 * reconnect (a route between cluster nodes that flapped, interest not yet propagated across a
 * cluster after a subscribe) is noticed at the session's next event, and in a session that goes
 * quiet there may be none. The check bounds that to about this interval plus the grace below.
 * It costs one request per 5,000 sessions per interval.
 */
export const HEADS_CHECK_INTERVAL_MS = 5_000;
/** A session found behind may only be waiting for an event on its way: fetched if still behind after this. */
export const HEAD_GRACE_MS = 1_000;

export interface SendRequest {
  sessionId: number;
  clientMsgId: string;
  content: string;
  sender: { id: number; role: InboundMessage['sender_role'] };
  timeoutMs: number;
}

const keyOf = (sessionId: number, clientMsgId: string) => `${sessionId}:${clientMsgId}`;

/**
 * Fan-out of confirmed events to this gateway's sockets. A gateway subscribes to a session's
 * confirmed subject only while one of its sockets is joined to it or a send to it is in flight,
 * so it receives only its own sessions' traffic. Each session's events are delivered in seq
 * order: an event that arrives early waits `gapWaitMs` for the missing ones, which are then
 * fetched from persistence. Each socket keeps a cursor, so it receives every seq once.
 */
export function createSessionHub(options: SessionHubOptions) {
  const { bus, subjects, persistence, metrics, gapWaitMs } = options;
  const headGraceMs = options.headGraceMs ?? HEAD_GRACE_MS;
  /** How soon a failed fill (the first of a session's in a row), or a failed resync, is tried again. */
  const retryMs = Math.max(gapWaitMs, 500);
  /**
   * Fills failed since persistence last answered (a fill, or a check of the heads), in any
   * session: the first is a warning, the rest debug lines. With persistence down, each session
   * with a gap failed every `retryMs`, and each failure was a warning: thousands a second on a
   * gateway with thousands of such sessions.
   */
  let fillsFailed = 0;
  const log = options.logger.child({ module: 'hub' });
  const channels = new Map<number, Channel>();
  /** Set by `close()`: nothing is fetched or scheduled any more. */
  let closed = false;
  const waiters = new Map<string, Set<{ resolve: (message: Message) => void; reject: (error: Error) => void }>>();

  const resolveWaiters = (message: Message) => {
    const key = keyOf(message.session_id, message.client_msg_id);
    const pending = waiters.get(key);
    if (!pending) return;
    waiters.delete(key);
    for (const waiter of pending) waiter.resolve(message);
  };

  const deliver = (channel: Channel, message: Message) => {
    channel.lastSeq = message.seq;
    let encoded: Buffer | undefined;
    for (const [member, state] of channel.members) {
      if (state.replaying) {
        // Dropped beyond the cap: the replay goes on until the member's cursor reaches `lastSeq`,
        // which is this seq or later, so it fetches the message from persistence.
        state.queued ??= [];
        if (state.queued.length < MAX_QUEUED_EVENTS) state.queued.push(message);
      } else if (message.seq > state.cursor) {
        encoded ??= Buffer.from(JSON.stringify({ type: 'new_message', message }));
        member.sendEncoded(encoded, 'new_message');
        state.cursor = message.seq;
      }
    }
  };

  /** Delivers held events that are next in line. */
  const drainEarly = (channel: Channel) => {
    if (channel.lastSeq === undefined) return;
    for (const seq of [...channel.early.keys()]) if (seq <= channel.lastSeq) channel.early.delete(seq);
    for (let next = channel.early.get(channel.lastSeq + 1); next; next = channel.early.get(channel.lastSeq + 1)) {
      channel.early.delete(next.seq);
      deliver(channel, next);
    }
    if (channel.early.size > 0 || channel.overflowed)
      scheduleGapFill(channel, channel.early.size >= MAX_EARLY_EVENTS || channel.overflowed ? 0 : gapWaitMs);
    // The gap closed by itself (its late event came within the wait): the fill waiting for it is
    // not needed. Not a retry after a failed fill, which may be fetching what no event will bring.
    else if (channel.fillFailures === 0) cancelGapFill(channel);
  };

  /**
   * Holds an event until the seqs before it are delivered. Beyond MAX_EARLY_EVENTS (fills failing
   * while events keep coming) it is dropped and left to the fill, which `overflowed` makes sure runs.
   */
  const holdEarly = (channel: Channel, message: Message) => {
    if (channel.early.size < MAX_EARLY_EVENTS) channel.early.set(message.seq, message);
    else channel.overflowed = true;
  };

  /** Fetches everything after the last delivered seq from persistence, then delivers what was held. */
  const fillGap = async (channel: Channel) => {
    if (closed || channel.lastSeq === undefined) return;
    if (channel.filling) {
      // The running fill goes on for one more page rather than leave this to the next check.
      channel.fillAgain = true;
      return;
    }
    channel.filling = true;
    metrics.gapFills.inc();
    try {
      // Again while a fill was asked for during the pass (a resync after the events it must fetch
      // were lost, say): its last page may have been read too early for them.
      do {
        // Every request below is made after this, so it fetches whatever was dropped until now; an
        // event dropped while it runs sets the flag again, and `drainEarly` then fills once more.
        channel.fillAgain = false;
        channel.overflowed = false;
        for (;;) {
          // A member closed from within a delivery (a slow reader: see `ClientConnection.close`) may
          // have been the last one, and the position is forgotten with it.
          if (channel.lastSeq === undefined) return;
          const from: number = channel.lastSeq;
          const { messages } = await persistence.call('messages.after', {
            session_id: channel.sessionId,
            after_seq: from,
            limit: CATCH_UP_PAGE,
          });
          if (channels.get(channel.sessionId) !== channel || channel.lastSeq === undefined) return;
          let filled = 0;
          for (const message of messages)
            if (message.seq === channel.lastSeq + 1) {
              // Its event never came: a send waiting for it on this gateway is answered now too.
              resolveWaiters(message);
              deliver(channel, message);
              filled++;
            }
          // Persistence cuts a page short when it would not fit in one reply, so a short page does
          // not mean the end: only a page that fills nothing (empty, or already delivered by live
          // events meanwhile) does.
          if (filled === 0) break;
        }
      } while (channel.fillAgain);
      channel.fillFailures = 0;
      fillsFailed = 0;
      // A retry still waiting (a fill that succeeded when a check asked for it) is not needed, and
      // would hold back the fill of a new gap: drainEarly schedules one if a gap is left.
      cancelGapFill(channel);
      drainEarly(channel);
    } catch (error) {
      // Released meanwhile (its last member left or was closed): nobody is behind, nothing to retry.
      if (channels.get(channel.sessionId) !== channel || channel.lastSeq === undefined) return;
      metrics.gapFillFailures.inc();
      const level = fillsFailed++ === 0 ? 'warn' : 'debug';
      log[level]({ err: error, sessionId: channel.sessionId, failedInARow: fillsFailed }, 'filling a gap failed; will retry');
      // The backoff replaces a fill an event scheduled meanwhile, which would only fail again sooner.
      cancelGapFill(channel);
      scheduleGapFill(channel, Math.min(Math.max(retryMs, MAX_FILL_RETRY_MS), retryMs * 2 ** channel.fillFailures++));
    } finally {
      channel.filling = false;
    }
  };

  const cancelGapFill = (channel: Channel) => {
    clearTimeout(channel.gapTimer);
    channel.gapTimer = undefined;
  };

  const scheduleGapFill = (channel: Channel, delayMs: number) => {
    if (closed || channel.gapTimer) return;
    channel.gapTimer = setTimeout(() => {
      channel.gapTimer = undefined;
      void fillGap(channel);
    }, delayMs);
  };

  const onEvent = (channel: Channel, data: Uint8Array) => {
    const parsed = confirmedEventSchema.safeParse(decodeJson(data));
    if (!parsed.success) {
      log.error({ sessionId: channel.sessionId }, 'malformed confirmed event dropped');
      return;
    }
    const { message } = parsed.data;
    resolveWaiters(message);
    if (channel.lastSeq === undefined) {
      if (channel.joining > 0) holdEarly(channel, message);
      return;
    }
    if (message.seq <= channel.lastSeq) return;
    if (message.seq === channel.lastSeq + 1) {
      deliver(channel, message);
      drainEarly(channel);
    } else {
      holdEarly(channel, message);
      scheduleGapFill(channel, channel.early.size >= MAX_EARLY_EVENTS ? 0 : gapWaitMs);
    }
  };

  /** A session found behind the database: fetched unless its events arrive within the grace. */
  const catchUpTo = (channel: Channel, head: number) => {
    if (channel.headTimer) return;
    channel.headTimer = setTimeout(() => {
      channel.headTimer = undefined;
      if (closed || channel.lastSeq === undefined || channel.lastSeq >= head) return;
      metrics.headCatchUps.inc();
      void fillGap(channel);
    }, headGraceMs);
  };

  /**
   * Counts `resync()`s, and names the check in flight by the count it began under. A resync starts
   * a check of its own rather than wait for one begun before it: a check sent while NATS was away
   * has lost its request (nats.js fails it only at its timeout, 5 s on), and waiting for it held
   * back the catch-up of events lost in the outage by as long.
   */
  let resyncs = 0;
  let checkInFlight: number | undefined;
  /** Failed checks in a row: the first is a warning, the rest (persistence down, or not upgraded yet) only debug lines. */
  let headChecksFailed = 0;
  /**
   * Set by `resync()`: events were lost while NATS was away, so the next check fetches the
   * sessions behind at once, without the grace, and is tried again until it gets through.
   */
  let resyncWanted = false;
  let resyncTimer: NodeJS.Timeout | undefined;
  /** Compares each delivered session's last seq with the database's, and catches up those behind. */
  const checkHeads = async (): Promise<void> => {
    if (checkInFlight === resyncs || closed) return;
    const mine = resyncs;
    checkInFlight = mine;
    const resyncing = resyncWanted;
    resyncWanted = false;
    let failed = false;
    try {
      // A position is kept only while a socket is joined or joining: those are the sessions delivered.
      const delivered = [...channels.values()].filter((channel) => channel.lastSeq !== undefined);
      const perRequest = sessionHeadsPerRequest(bus.maxPayload());
      for (let from = 0; from < delivered.length && !closed; from += perRequest) {
        const batch = delivered.slice(from, from + perRequest);
        const { heads } = await persistence.call('sessions.heads', { session_ids: batch.map((channel) => channel.sessionId) });
        for (const { id, last_seq: head } of heads) {
          const channel = channels.get(id);
          if (channel?.lastSeq === undefined || channel.lastSeq >= head) continue;
          if (resyncing) void fillGap(channel);
          else catchUpTo(channel, head);
        }
      }
      headChecksFailed = 0;
      fillsFailed = 0;
    } catch (error) {
      failed = true;
      // One a resync has replaced (its request lost with the connection) is no failure to count or tell.
      if (mine !== resyncs) return;
      if (resyncing) resyncWanted = true;
      const level = headChecksFailed++ === 0 ? 'warn' : 'debug';
      log[level]({ err: error, failedInARow: headChecksFailed }, 'checking the sessions against the database failed; will try again');
    } finally {
      if (checkInFlight === mine) checkInFlight = undefined;
    }
    // A resync since has a check of its own. One asked for while this check ran (it may have read
    // some heads before the events were lost) runs now; one that failed waits, so an unreachable
    // persistence is not asked in a loop.
    if (mine !== resyncs || !resyncWanted || closed) return;
    if (!failed) void checkHeads();
    else if (!resyncTimer)
      resyncTimer = setTimeout(() => {
        resyncTimer = undefined;
        void checkHeads();
      }, retryMs);
  };
  const headsTimer = options.headsCheckIntervalMs ? setInterval(() => void checkHeads(), options.headsCheckIntervalMs).unref() : undefined;

  /** The session's channel, subscribing when it is new, with one more reference. */
  const acquire = (sessionId: number): Channel => {
    let channel = channels.get(sessionId);
    if (!channel) {
      const created: Channel = {
        sessionId,
        subscription: bus.subscribe(subjects.confirmed(sessionId), (data) => onEvent(created, data)),
        refs: 0,
        members: new Map(),
        lastSeq: undefined,
        joining: 0,
        early: new Map(),
        overflowed: false,
        gapTimer: undefined,
        headTimer: undefined,
        filling: false,
        fillAgain: false,
        fillFailures: 0,
      };
      channel = created;
      channels.set(sessionId, channel);
      metrics.sessions.set(channels.size);
    }
    channel.refs++;
    return channel;
  };

  const retain = async (sessionId: number): Promise<Channel> => {
    const channel = acquire(sessionId);
    try {
      await channel.subscription;
    } catch (error) {
      release(channel);
      throw error;
    }
    return channel;
  };

  const release = (channel: Channel) => {
    channel.refs--;
    if (channel.refs > 0) return;
    void channel.subscription.then((subscription) => subscription.unsubscribe()).catch(() => undefined);
    clearTimeout(channel.gapTimer);
    clearTimeout(channel.headTimer);
    if (channels.get(channel.sessionId) === channel) channels.delete(channel.sessionId);
    metrics.sessions.set(channels.size);
  };

  /** The channels each subscriber is a member of, so that leaving them all does not visit every session. */
  const memberships = new WeakMap<Subscriber, Set<Channel>>();

  const addMember = (channel: Channel, subscriber: Subscriber, state: MemberState) => {
    channel.members.set(subscriber, state);
    let joined = memberships.get(subscriber);
    if (!joined) {
      joined = new Set();
      memberships.set(subscriber, joined);
    }
    joined.add(channel);
  };

  /**
   * Nobody to deliver to: forget the position; the next join starts from the database. Not while
   * a join is in progress: it read the session's position before events that have since been
   * delivered, and replays up to this position to get them.
   */
  const forgetIfUnwatched = (channel: Channel) => {
    if (channel.members.size > 0 || channel.joining > 0) return;
    channel.lastSeq = undefined;
    channel.early.clear();
    channel.overflowed = false;
  };

  const removeMember = (channel: Channel, subscriber: Subscriber) => {
    if (!channel.members.delete(subscriber)) return false;
    const joined = memberships.get(subscriber);
    joined?.delete(channel);
    if (joined?.size === 0) memberships.delete(subscriber);
    forgetIfUnwatched(channel);
    release(channel);
    return true;
  };

  /** Sends a member the messages after its cursor up to what the channel has delivered, then its queued live events. */
  const replay = async (channel: Channel, subscriber: Subscriber, state: MemberState) => {
    while (channel.lastSeq !== undefined && state.cursor < channel.lastSeq) {
      const { messages } = await persistence.call('messages.after', {
        session_id: channel.sessionId,
        after_seq: state.cursor,
        limit: CATCH_UP_PAGE,
      });
      if (channel.members.get(subscriber) !== state) return;
      if (messages.length === 0) break;
      for (const message of messages) {
        if (message.seq <= state.cursor) continue;
        subscriber.sendEncoded(JSON.stringify({ type: 'new_message', message }), 'new_message');
        state.cursor = message.seq;
      }
      // A client too slow for the page is closed, and gets no further page fetched for it; one on a
      // slow link gets the next page once it has read this one, rather than page after page piling
      // up in its buffer until it is closed as slow.
      await subscriber.caughtUp();
      if (channel.members.get(subscriber) !== state) return;
    }
    state.replaying = false;
    for (const message of state.queued ?? []) {
      if (message.seq <= state.cursor) continue;
      subscriber.sendEncoded(JSON.stringify({ type: 'new_message', message }), 'new_message');
      state.cursor = message.seq;
    }
    state.queued = undefined;
  };

  /** Subscribers that have left for good (their socket closed): a join still in progress does not add them. */
  const departed = new WeakSet<Subscriber>();

  const deadLetters = bus.subscribe(subjects.deadLetters, (data) => {
    const parsed = deadLetterSchema.safeParse(decodeJson(data));
    if (!parsed.success) return;
    const key = keyOf(parsed.data.session_id, parsed.data.client_msg_id);
    const pending = waiters.get(key);
    if (!pending) return;
    waiters.delete(key);
    for (const waiter of pending) waiter.reject(new FrameError(ErrorCode.Internal, 'the message could not be stored'));
  });

  /** Publishes to the inbound stream and waits for the stored message (see `send`). */
  const publishAndConfirm = async (request: SendRequest): Promise<Message> => {
    const { sessionId, clientMsgId } = request;
    const channel = await retain(sessionId);
    const key = keyOf(sessionId, clientMsgId);
    let waiter: { resolve: (message: Message) => void; reject: (error: Error) => void } | undefined;
    const confirmed = new Promise<Message>((resolve, reject) => {
      waiter = { resolve, reject };
      const set = waiters.get(key) ?? new Set();
      set.add(waiter);
      waiters.set(key, set);
    });
    // A dead letter may reject it before anyone awaits it; the rejection is read below.
    confirmed.catch(() => undefined);
    const forget = () => {
      const set = waiters.get(key);
      if (waiter) set?.delete(waiter);
      if (set?.size === 0) waiters.delete(key);
    };
    /**
     * The message as stored, if it is: the answer when its confirmation cannot be waited for.
     * Throws `internal` when persistence set aside the stream's message `streamSeq` (the PubAck's:
     * for a duplicate, the first publish's): a send of it again within the stream's duplicate
     * window is taken for a duplicate, and no confirmation and no dead letter will come for it
     * (the dead letter was announced before, to a sender that had dropped). Waiting out the send
     * timeout and answering `unavailable`, each retry held the sender's sends 10 s.
     */
    const lookUpStored = async (streamSeq: number): Promise<Message | null> => {
      const found = await persistence
        .call('messages.lookup', { session_id: sessionId, client_msg_id: clientMsgId, stream_seq: streamSeq })
        .catch(() => undefined);
      if (found?.dead_lettered) throw new FrameError(ErrorCode.Internal, 'the message could not be stored');
      return found?.message ?? null;
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      const inbound: InboundMessage = {
        session_id: sessionId,
        client_msg_id: clientMsgId,
        sender_id: request.sender.id,
        sender_role: request.sender.role,
        content: request.content,
        received_at: new Date().toISOString(),
      };
      const payload = encodeJson(inbound);
      // Refused before it is published: NATS would take it into the stream and then refuse its
      // larger confirmed event, and it would be stored but never delivered.
      const maxPayload = bus.maxPayload();
      if (payload.length + MAX_PAYLOAD_HEADROOM_BYTES > maxPayload) {
        throw new FrameError(
          ErrorCode.PayloadTooLarge,
          `the message is over what the message broker takes (${maxPayload - MAX_PAYLOAD_HEADROOM_BYTES} bytes with its metadata); shorten the content`,
        );
      }
      let published: { duplicate: boolean; seq: number };
      try {
        published = await bus.publishDurable(
          subjects.inbound(sessionId),
          payload,
          inboundMessageId(sessionId, clientMsgId),
          PUBLISH_TIMEOUT_MS,
        );
      } catch (error) {
        if (!(error instanceof BusError)) throw error;
        log.warn({ err: error, sessionId }, 'publishing to the inbound stream failed');
        throw new FrameError(ErrorCode.Unavailable, 'the message could not be accepted; retry with the same client_msg_id');
      }
      // A send the stream already held is a retry, unless it is another sender's message with the
      // same id (which `send` refuses): counted once the message is known.
      const counted = (message: Message): Message => {
        if (published.duplicate && message.sender_id === request.sender.id) metrics.duplicateSends.inc();
        return message;
      };
      if (published.duplicate) {
        // Stored already, or still on its way to persistence.
        const stored = await lookUpStored(published.seq);
        if (stored) return counted(stored);
      }
      const timedOut = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(
          () => reject(new FrameError(ErrorCode.Unavailable, 'the message is not confirmed yet; retry with the same client_msg_id')),
          request.timeoutMs,
        );
      });
      try {
        return counted(await Promise.race([confirmed, timedOut]));
      } catch (error) {
        // The confirmation may have been lost while it was stored: ask before giving up.
        if (error instanceof FrameError && error.code === ErrorCode.Unavailable) {
          const stored = await lookUpStored(published.seq);
          if (stored) return counted(stored);
        }
        throw error;
      }
    } finally {
      clearTimeout(timer);
      forget();
      release(channel);
    }
  };

  return {
    /**
     * Joins a socket to a session: sends `joined_session` with the session's newest seq, then
     * the messages after `lastSeq` (when given), then live events, each once and in order.
     */
    async join(subscriber: Subscriber, sessionId: number, lastSeq: number | undefined, reqId: ReqId | undefined): Promise<void> {
      const channel = acquire(sessionId);
      channel.joining++;
      let state: MemberState | undefined;
      try {
        await channel.subscription;
        // Read after subscribing, so no event can fall between the read and the subscription.
        const { session } = await persistence.call('sessions.get', { session_id: sessionId });
        // Gone meanwhile (closing for a restart, say): not added, and told so if it still reads.
        // Returning quietly, it left a client whose socket was closed a moment later unanswered.
        if (departed.has(subscriber))
          throw new FrameError(ErrorCode.Unavailable, 'the connection is closing; join again after reconnecting');
        const previous = channel.members.get(subscriber);
        if (previous) release(channel); // re-joining: one membership, one reference
        if (channel.lastSeq === undefined) {
          channel.lastSeq = session.last_seq;
          drainEarly(channel);
        }
        // Without `last_seq` the socket starts from now, but not before what it has already been
        // sent: an event delivered to its membership while this join read the session (a newer
        // seq than the one read) is not sent again. A `last_seq` asks for what follows it, repeats included.
        const start = Math.min(lastSeq ?? session.last_seq, session.last_seq);
        const cursor = lastSeq === undefined && previous ? Math.max(start, previous.cursor) : start;
        state = { cursor, replaying: true, queued: undefined };
        addMember(channel, subscriber, state);
        subscriber.send({
          type: 'joined_session',
          ...withReqId(reqId),
          session_id: sessionId,
          last_seq: session.last_seq,
        });
        await replay(channel, subscriber, state);
      } catch (error) {
        if (state && channel.members.get(subscriber) === state) removeMember(channel, subscriber);
        else if (!state) release(channel);
        throw error;
      } finally {
        channel.joining--;
        forgetIfUnwatched(channel);
      }
    },

    /** How many sessions the subscriber is joined to, and whether `sessionId` is one of them. */
    membership(subscriber: Subscriber, sessionId: number): { count: number; includes: boolean } {
      return {
        count: memberships.get(subscriber)?.size ?? 0,
        includes: channels.get(sessionId)?.members.has(subscriber) ?? false,
      };
    },

    leave(subscriber: Subscriber, sessionId: number): boolean {
      const channel = channels.get(sessionId);
      return channel ? removeMember(channel, subscriber) : false;
    },

    /** The subscriber is gone for good: leaves every session, and joins still in progress do not add it. */
    leaveAll(subscriber: Subscriber): void {
      departed.add(subscriber);
      for (const channel of [...(memberships.get(subscriber) ?? [])]) removeMember(channel, subscriber);
    },

    /** Sessions this gateway is subscribed to. */
    sessionCount(): number {
      return channels.size;
    },

    isJoined(subscriber: Subscriber, sessionId: number): boolean {
      return channels.get(sessionId)?.members.has(subscriber) ?? false;
    },

    /**
     * Publishes a message to the inbound stream and resolves with it once persistence has
     * stored it. A retry of a stored message resolves with the original.
     * @throws FrameError `unavailable` when NATS refuses it or no confirmation comes in time;
     * `invalid_message` when another sender's message in the session has the same client_msg_id.
     */
    async send(request: SendRequest): Promise<Message> {
      const message = await publishAndConfirm(request);
      // A client_msg_id identifies a message within its session, so a retry finds the original.
      // Another sender's message with the same id is not this one: acking it would tell this
      // sender that its own message was stored, with someone else's content.
      if (message.sender_id !== request.sender.id)
        throw new FrameError(
          ErrorCode.InvalidMessage,
          'client_msg_id is already used in this session by another sender; nothing was stored: send with a fresh one',
        );
      return message;
    },

    /**
     * After a NATS reconnect: events may have been missed while disconnected, so every session
     * behind the database is caught up. Which ones are behind is asked in batches (`checkHeads`):
     * a gap fill for each session at once would be thousands of requests after one reconnect.
     */
    resync(): void {
      resyncs++;
      resyncWanted = true;
      void checkHeads();
    },

    /** Events of a session held in memory: ahead of a gap, or queued for members still replaying (for tests and diagnostics). */
    heldEvents(sessionId: number): number {
      const channel = channels.get(sessionId);
      if (!channel) return 0;
      let held = channel.early.size;
      for (const state of channel.members.values()) held += state.queued?.length ?? 0;
      return held;
    },

    checkHeads,

    /** Resolves once the hub listens for dead letters. */
    ready: deadLetters.then(() => undefined),

    close(): void {
      closed = true;
      clearInterval(headsTimer);
      clearTimeout(resyncTimer);
      // A subscription that never came (its start failed) has nothing to undo.
      void deadLetters.then((subscription) => subscription.unsubscribe()).catch(() => undefined);
      for (const channel of channels.values()) {
        clearTimeout(channel.gapTimer);
        clearTimeout(channel.headTimer);
        void channel.subscription.then((subscription) => subscription.unsubscribe()).catch(() => undefined);
      }
      channels.clear();
    },
  };
}

export type SessionHub = ReturnType<typeof createSessionHub>;
