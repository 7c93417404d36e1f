import { EventEmitter } from 'node:events';
import { type Duplex, PassThrough } from 'node:stream';
import { createMemoryBus, Deadlines, encodeJson, type PersistenceClient } from '@switchboard/bus';
import { createLogger } from '@switchboard/logging';
import { CloseCode, createSubjects, type Message, SESSION_HEADS_MAX, type ServerFrame } from '@switchboard/protocol';
import type { TokenVerifier } from '@switchboard/tokens';
import { Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { loadGatewayConfig } from '../config.js';
import { createGatewayMetrics } from '../metrics.js';
import { TokenRevocations } from '../token-revocations.js';
import { ClientConnection } from '../ws/connection.js';
import { UserConnections } from '../ws/user-connections.js';
import type { SessionAccess } from './session-access.js';
import { CATCH_UP_PAGE, createSessionHub, MAX_EARLY_EVENTS, MAX_QUEUED_EVENTS, type Subscriber } from './session-hub.js';

/*
 * The hub's handling of races between a join and the events around it, which real NATS and
 * PostgreSQL cannot be made to produce on demand: here the bus is the in-memory one and the
 * persistence service answers when the test lets it.
 */

const SESSION = 1;
const subjects = createSubjects('hubtest');

const message = (seq: number): Message => ({
  id: seq,
  session_id: SESSION,
  seq,
  sender_id: 7,
  sender_role: 'user',
  content: `message ${seq}`,
  client_msg_id: `c-${seq}`,
  created_at: new Date(0).toISOString(),
});

const seqs = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `seq:${from + i}`);

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

/**
 * A persistence whose `sessions.get` reads when called and answers only when released; it holds
 * messages 1..stored, and answers `messages.after` in pages of at most `limit`, as persistence does.
 */
function persistenceStub(initiallyStored: number) {
  const firstRead = { started: deferred(), released: deferred() };
  let nextRead: typeof firstRead | undefined = firstRead;
  let fetchHold: { started: ReturnType<typeof deferred>; released: ReturnType<typeof deferred>; afterSeq?: number } | undefined;
  let headsHold: { started: ReturnType<typeof deferred>; released: ReturnType<typeof deferred> } | undefined;
  const stub = {
    stored: initiallyStored,
    /** `messages.after` requests made: fetches of missing messages. */
    fetches: 0,
    /** The `after_seq` of each `messages.after` request. */
    fetchedAfter: [] as unknown[],
    /** `sessions.heads` fails while set, as with persistence down or not upgraded yet. */
    headsFailing: false,
    /** `messages.after` fails while set, as with persistence down. */
    fetchesFailing: false,
    /** How many sessions each `sessions.heads` request asked about. */
    headsRequests: [] as number[],
    readStarted: firstRead.started.promise,
    release: () => firstRead.released.resolve(),
    /** Holds the next `sessions.get`, once it has read, until released; the others wait for `release()`. */
    holdNextRead() {
      const held = { started: deferred(), released: deferred() };
      nextRead = held;
      return { started: held.started.promise, release: held.released.resolve };
    },
    /** Holds the next `sessions.heads` until released, and then fails it: a request lost with the connection to NATS. */
    holdNextHeads() {
      const held = { started: deferred(), released: deferred() };
      headsHold = held;
      return { started: held.started.promise, release: held.released.resolve };
    },
    /** `messages.after` answers with what was stored when it was asked, not when it is released from a hold. */
    answersAsAsked: false,
    /** How long `messages.after` takes to answer: a round trip to persistence. */
    fetchDelayMs: 0,
    /** Holds every `messages.after` (or only the one after `afterSeq`) until released. */
    holdFetches(afterSeq?: number) {
      const held = { started: deferred(), released: deferred(), afterSeq };
      fetchHold = held;
      return {
        started: held.started.promise,
        release: () => {
          fetchHold = undefined;
          held.released.resolve();
        },
      };
    },
    client: {
      async call(endpoint: string, request: { after_seq?: number; limit?: number }) {
        if (endpoint === 'sessions.get') {
          const lastSeq = stub.stored;
          const held = nextRead;
          if (held) {
            nextRead = undefined;
            held.started.resolve();
            await held.released.promise;
          } else await firstRead.released.promise;
          const session = { id: SESSION, customer_id: 7, status: 'open', subject: null, created_at: new Date(0).toISOString() };
          return { session: { ...session, last_seq: lastSeq } };
        }
        if (endpoint === 'sessions.heads') {
          const held = headsHold;
          if (held) {
            headsHold = undefined;
            held.started.resolve();
            await held.released.promise;
            throw new Error('timeout');
          }
          if (stub.headsFailing) throw new Error('no responders');
          const ids = (request as { session_ids: number[] }).session_ids;
          stub.headsRequests.push(ids.length);
          return { heads: ids.map((id) => ({ id, last_seq: stub.stored })) };
        }
        if (endpoint === 'messages.after') {
          stub.fetches++;
          stub.fetchedAfter.push(request.after_seq);
          const storedWhenAsked = stub.stored;
          if (fetchHold && (fetchHold.afterSeq === undefined || fetchHold.afterSeq === request.after_seq)) {
            fetchHold.started.resolve();
            await fetchHold.released.promise;
          }
          if (stub.fetchDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, stub.fetchDelayMs));
          if (stub.fetchesFailing) throw new Error('no responders');
          const after = request.after_seq ?? 0;
          const stored = stub.answersAsAsked ? storedWhenAsked : stub.stored;
          const count = Math.min(request.limit ?? Number.POSITIVE_INFINITY, Math.max(0, stored - after));
          return { messages: Array.from({ length: count }, (_, i) => message(after + i + 1)) };
        }
        throw new Error(`unexpected ${endpoint}`);
      },
    } as unknown as PersistenceClient,
  };
  return stub;
}

function recorder(id: string) {
  const frames: string[] = [];
  const subscriber: Subscriber = {
    id,
    send: (frame: ServerFrame) => frames.push(frame.type === 'joined_session' ? `joined:${frame.last_seq}` : frame.type),
    sendEncoded: (data) => frames.push(`seq:${(JSON.parse(data.toString()) as { message: Message }).message.seq}`),
    caughtUp: async () => undefined,
  };
  return { subscriber, frames };
}

async function setUp(stored: number, logLines?: string[]) {
  const bus = createMemoryBus();
  const persistence = persistenceStub(stored);
  const metrics = createGatewayMetrics(new Registry());
  const hub = createSessionHub({
    bus,
    subjects,
    persistence: persistence.client,
    logger: logLines
      ? createLogger({ name: 'hub-test', level: 'info', destination: { write: (line: string) => logLines.push(line) } })
      : createLogger({ name: 'hub-test', level: 'silent' }),
    metrics,
    gapWaitMs: 20,
    headGraceMs: 30,
  });
  await hub.ready;
  const confirm = (seq: number) => {
    persistence.stored = Math.max(persistence.stored, seq);
    bus.publish(subjects.confirmed(SESSION), encodeJson({ message: message(seq) }));
  };
  return { hub, persistence, confirm, metrics };
}

/** A hub with one member joined to the empty session, and what it has been sent. */
async function setUpJoined(logLines?: string[]) {
  const setup = await setUp(0, logLines);
  const { subscriber, frames } = recorder('member');
  setup.persistence.release();
  await setup.hub.join(subscriber, SESSION, undefined, undefined);
  return { ...setup, frames };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

describe('session hub', () => {
  it('closes without an unhandled rejection when its subscription to dead letters failed', async () => {
    const failure = new Error('NATS refused the subscription');
    const bus = { ...createMemoryBus(), subscribe: () => Promise.reject(failure) };
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', record);
    try {
      const hub = createSessionHub({
        bus,
        subjects,
        persistence: persistenceStub(0).client,
        logger: createLogger({ name: 'hub-test', level: 'silent' }),
        metrics: createGatewayMetrics(new Registry()),
        gapWaitMs: 20,
      });
      await expect(hub.ready).rejects.toBe(failure);
      hub.close();
      await settle();
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', record);
    }
  });

  it('delivers an event that overtakes the first join’s read of the session', async () => {
    const { hub, persistence, confirm } = await setUp(5);
    const { subscriber, frames } = recorder('a');
    const joined = hub.join(subscriber, SESSION, undefined, undefined);
    await persistence.readStarted;
    confirm(6); // committed after the read (last_seq 5), its event arrives before the answer
    persistence.release();
    await joined;
    await settle();
    expect(frames).toEqual(['joined:5', 'seq:6']);
    hub.close();
  });

  it('does not send again what a member has when it joins again without last_seq', async () => {
    const { hub, persistence, confirm } = await setUp(10);
    const { subscriber, frames } = recorder('again');
    persistence.release();
    await hub.join(subscriber, SESSION, undefined, undefined);
    const held = persistence.holdNextRead();
    const rejoined = hub.join(subscriber, SESSION, undefined, undefined);
    await held.started; // it reads last_seq 10…
    confirm(11); // …and 11 reaches the membership it still has
    await settle();
    held.release();
    await rejoined;
    await settle();
    expect(frames).toEqual(['joined:10', 'seq:11', 'joined:10']);
    hub.close();
  });

  it('does not keep a subscriber that left while its join was in progress, and refuses its join', async () => {
    const { hub, persistence } = await setUp(0);
    const { subscriber, frames } = recorder('b');
    const joined = hub.join(subscriber, SESSION, undefined, undefined);
    await persistence.readStarted;
    hub.leaveAll(subscriber); // the socket closed, or is closing for a restart
    persistence.release();
    // Before: it came back quietly, and a client still reading until its 1012 had no answer.
    await expect(joined).rejects.toMatchObject({ code: 'unavailable' });
    expect(hub.isJoined(subscriber, SESSION)).toBe(false);
    expect(hub.sessionCount()).toBe(0);
    expect(frames).toEqual([]);
    hub.close();
  });

  it('catches a member up after a confirmed event that never arrived, at the next check of the heads', async () => {
    const { hub, persistence, frames } = await setUpJoined();
    persistence.stored = 1; // committed, and its event lost on the way
    await settle();
    expect(frames).toEqual(['joined:0']);
    await hub.checkHeads();
    await settle();
    expect(frames).toEqual(['joined:0', 'seq:1']);
    hub.close();
  });

  it('fetches nothing for a session whose event arrives within the grace', async () => {
    const { hub, persistence, confirm, frames } = await setUpJoined();
    persistence.stored = 1; // committed, its event still on its way
    await hub.checkHeads();
    confirm(1);
    await settle();
    expect(frames).toEqual(['joined:0', 'seq:1']);
    expect(persistence.fetches).toBe(0);
    hub.close();
  });

  it('warns once while the check keeps failing (persistence down, or not upgraded yet), and again after a success', async () => {
    const lines: string[] = [];
    const { hub, persistence } = await setUpJoined(lines);
    const warnings = () => lines.filter((line) => line.includes('checking the sessions against the database failed')).length;
    persistence.headsFailing = true;
    for (let check = 0; check < 3; check++) await hub.checkHeads();
    expect(warnings()).toBe(1);
    persistence.headsFailing = false;
    await hub.checkHeads();
    persistence.headsFailing = true;
    await hub.checkHeads();
    expect(warnings()).toBe(2);
    hub.close();
  });

  it('fetches nothing for a gap that closes by itself, its late event coming within the wait', async () => {
    const { hub, persistence, confirm, frames, metrics } = await setUpJoined();
    confirm(2); // ahead of 1: held, and a fill scheduled after the wait
    confirm(1); // …which 1 makes needless
    await settle();
    expect(frames).toEqual(['joined:0', 'seq:1', 'seq:2']);
    // Before: the fill ran all the same, a request to persistence for each reordered pair.
    expect(persistence.fetches).toBe(0);
    expect((await metrics.gapFills.get()).values[0]?.value ?? 0).toBe(0);
    hub.close();
  });

  it('neither retries, counts nor warns of a fill that fails after its session was released', async () => {
    const lines: string[] = [];
    const { hub, persistence, confirm, metrics } = await setUp(0, lines);
    persistence.release();
    const { subscriber } = recorder('leaving');
    await hub.join(subscriber, SESSION, undefined, undefined);
    const fetches = persistence.holdFetches();
    persistence.stored = 1; // lost on the way
    confirm(2);
    await fetches.started;
    hub.leaveAll(subscriber); // the last member goes while the fill waits
    persistence.fetchesFailing = true;
    fetches.release();
    await settle();
    await settle();
    // Before: counted, warned "will retry", and a retry armed on the released session.
    expect((await metrics.gapFillFailures.get()).values[0]?.value ?? 0).toBe(0);
    expect(lines.filter((line) => line.includes('filling a gap failed'))).toEqual([]);
    expect(persistence.fetches).toBe(1);
    hub.close();
  });

  it('does not hold back the fill of a gap that opens during the grace after a check', async () => {
    const { hub, persistence, confirm, frames } = await setUpJoined();
    persistence.stored = 1; // committed, its event on its way
    await hub.checkHeads();
    confirm(1);
    persistence.stored = 2; // committed, its event lost
    confirm(3); // arrives ahead of 2: the gap is filled after GAP_WAIT_MS
    await settle();
    expect(frames).toEqual(['joined:0', 'seq:1', 'seq:2', 'seq:3']);
    hub.close();
  });

  it('keeps the position for a join in progress when the only member leaves', async () => {
    const { hub, persistence, confirm } = await setUp(5);
    persistence.release();
    const a = recorder('a');
    await hub.join(a.subscriber, SESSION, undefined, undefined);
    const read = persistence.holdNextRead();
    const b = recorder('b');
    const joined = hub.join(b.subscriber, SESSION, undefined, undefined);
    await read.started; // b reads last_seq 5
    confirm(6); // delivered to a before b's read is answered
    await settle();
    expect(a.frames).toEqual(['joined:5', 'seq:6']);
    hub.leave(a.subscriber, SESSION);
    read.release();
    await joined;
    await settle();
    expect(b.frames).toEqual(['joined:5', 'seq:6']);
    hub.close();
  });

  it('looks a closing socket up only in its own sessions', async () => {
    const { hub, persistence } = await setUp(0);
    persistence.release();
    const subscribers = Array.from({ length: 2_000 }, (_, i) => recorder(`s${i}`).subscriber);
    await Promise.all(subscribers.map((subscriber, i) => hub.join(subscriber, i + 1, undefined, undefined)));
    const [first] = subscribers;
    if (!first) throw new Error('no subscribers');
    // Each session looked at removes the subscriber from its members (a Map keyed by subscriber).
    const deletes = vi.spyOn(Map.prototype, 'delete');
    try {
      hub.leaveAll(first);
      expect(deletes.mock.calls.filter(([key]) => key === first)).toHaveLength(1);
    } finally {
      deletes.mockRestore();
    }
    expect(hub.sessionCount()).toBe(subscribers.length - 1);
    for (const subscriber of subscribers) hub.leaveAll(subscriber);
    expect(hub.sessionCount()).toBe(0);
    hub.close();
  });

  it('after a reconnect, asks for the heads in batches and fetches nothing for sessions up to date', async () => {
    const { hub, persistence } = await setUp(3);
    persistence.release();
    const sessions = SESSION_HEADS_MAX + 1;
    await Promise.all(Array.from({ length: sessions }, (_, i) => hub.join(recorder(`s${i}`).subscriber, i + 1, undefined, undefined)));
    hub.resync();
    await settle();
    expect(persistence.fetches).toBe(0);
    expect(persistence.headsRequests).toEqual([SESSION_HEADS_MAX, 1]);
    hub.close();
  });

  it('after a reconnect, catches up a session that missed events, once persistence answers', async () => {
    const { hub, persistence, frames } = await setUpJoined();
    persistence.stored = 1; // committed while the gateway was away from NATS: its event is gone
    persistence.headsFailing = true;
    hub.resync();
    await settle();
    persistence.headsFailing = false;
    await vi.waitFor(() => expect(frames).toEqual(['joined:0', 'seq:1']), { timeout: 3_000 });
    hub.close();
  });

  it('after a reconnect, checks the heads at once, not after a check begun before it that the outage left unanswered', async () => {
    const lines: string[] = [];
    const { hub, persistence, frames } = await setUpJoined(lines);
    // A check sent while NATS was away: its request is gone, and it fails only at its timeout.
    const doomed = persistence.holdNextHeads();
    hub.resync();
    await doomed.started;
    // Back on NATS: 1 was committed meanwhile and its event lost.
    persistence.stored = 1;
    hub.resync();
    // Before: nothing until the first check had failed and the retry after it had run.
    await vi.waitFor(() => expect(frames).toEqual(['joined:0', 'seq:1']), { timeout: 2_000 });
    doomed.release();
    await settle();
    expect(frames).toEqual(['joined:0', 'seq:1']);
    // Replaced, its failure is no failure to tell of: the next real one is still a warning.
    expect(lines.filter((line) => line.includes('checking the sessions against the database failed'))).toEqual([]);
    hub.close();
  });

  it('after a reconnect during a fill whose last page was read too early, fills once more at once', async () => {
    const { hub, persistence, confirm, frames } = await setUpJoined();
    persistence.answersAsAsked = true;
    persistence.stored = 1; // its event lost
    // The fill this gap starts fetches 1 and 2, then finds nothing after 2, and that page is held.
    const lastPage = persistence.holdFetches(2);
    confirm(2);
    await lastPage.started;
    // Meanwhile the gateway was away from NATS: 3 was committed and its event lost.
    persistence.stored = 3;
    hub.resync();
    await settle();
    lastPage.release();
    // Before, 3 waited for the next periodic check of the heads (none runs in this test).
    await vi.waitFor(() => expect(frames).toEqual(['joined:0', 'seq:1', 'seq:2', 'seq:3']), { timeout: 2_000 });
    expect(persistence.fetchedAfter).toEqual([0, 2, 2, 3]);
    hub.close();
  });

  it('holds at most MAX_EARLY_EVENTS events ahead of a gap while fills fail, and delivers all of them once a fill succeeds', async () => {
    const { hub, persistence, confirm, frames } = await setUpJoined();
    persistence.fetchesFailing = true;
    persistence.stored = 1; // its event lost
    const last = MAX_EARLY_EVENTS + 501;
    for (let seq = 2; seq <= last; seq++) confirm(seq);
    await settle();
    expect(hub.heldEvents(SESSION)).toBe(MAX_EARLY_EVENTS);
    persistence.fetchesFailing = false;
    await vi.waitFor(() => expect(frames).toHaveLength(last + 1), { timeout: 3_000 });
    expect(frames).toEqual(['joined:0', ...seqs(1, last)]);
    hub.close();
  });

  it('waits longer after each failed fill, warns once while fills fail, and fills at once when a check finds persistence back', async () => {
    const lines: string[] = [];
    const { hub, persistence, confirm, frames, metrics } = await setUpJoined(lines);
    const warnings = () => lines.filter((line) => line.includes('filling a gap failed')).length;
    persistence.fetchesFailing = true;
    persistence.stored = 1; // its event lost
    confirm(2); // ahead of 1: a fill after GAP_WAIT_MS, tried again while it fails
    await new Promise((resolve) => setTimeout(resolve, 3_200));
    // Tried at 20 ms, then 0.5 and 1 s after each failure (2 s next): three tries. Before, one
    // every 500 ms (seven), each a warning.
    expect(persistence.fetches).toBe(3);
    expect(warnings()).toBe(1);
    // Each failure is counted, though only the first is a warning.
    expect((await metrics.gapFillFailures.get()).values[0]?.value).toBe(3);

    persistence.fetchesFailing = false;
    await hub.checkHeads();
    await settle();
    expect(frames).toEqual(['joined:0', 'seq:1', 'seq:2']);

    // A success starts afresh: the next failure warns again, and is tried again after 0.5 s.
    persistence.fetchesFailing = true;
    persistence.stored = 3;
    confirm(4);
    await settle();
    expect(warnings()).toBe(2);
    persistence.fetchesFailing = false;
    await vi.waitFor(() => expect(frames).toEqual(['joined:0', ...seqs(1, 4)]), { timeout: 1_000 });
    hub.close();
  });

  it('warns again about failing fills once persistence has answered a check, though no fill succeeded since', async () => {
    const lines: string[] = [];
    const { hub, persistence, confirm } = await setUpJoined(lines);
    const warnings = () => lines.filter((line) => line.includes('filling a gap failed')).length;
    persistence.fetchesFailing = true;
    persistence.stored = 1; // its event lost
    confirm(2);
    await settle();
    expect(warnings()).toBe(1);

    // Persistence answers the check of the heads, and the fill that follows it fails again.
    await hub.checkHeads();
    await settle();
    // Before, the count of failures since the last successful fill still stood: a debug line.
    expect(warnings()).toBe(2);
    hub.close();
  });

  it('ends a fill that dropped events once it has fetched them, however busy the session stays', async () => {
    const { hub, persistence, confirm, frames } = await setUpJoined();
    persistence.fetchDelayMs = 5;
    persistence.stored = 1; // its event lost
    // A full hold of early events starts a fill at once; the event after them is dropped, while
    // its first page is on its way.
    const fill = persistence.holdFetches();
    for (let seq = 2; seq <= MAX_EARLY_EVENTS + 2; seq++) confirm(seq);
    await fill.started;
    // The session stays busy: an event every 2 ms, from now on, while the fill runs and after.
    let seq = MAX_EARLY_EVENTS + 2;
    const busy = setInterval(() => confirm(++seq), 2);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const confirmedAtRelease = seq;
    fill.release();
    // The fill has caught up once events confirmed after it was let go reach the member (in order,
    // checked below). Waited for, not timed: on a busy machine its pages take longer than 300 ms.
    const lastDelivered = () => Number(frames.at(-1)?.replace('seq:', '') ?? 0);
    await vi.waitFor(() => expect(lastDelivered()).toBeGreaterThan(confirmedAtRelease + 20), { timeout: 10_000 });
    const fetchesWhileBusy = persistence.fetches;
    await new Promise((resolve) => setTimeout(resolve, 300));
    clearInterval(busy);
    // Before, every in-order event asked for one more page, for as long as events kept coming.
    expect(persistence.fetches).toBe(fetchesWhileBusy);
    expect(frames).toEqual(['joined:0', ...seqs(1, seq)]);
    hub.close();
  });

  it('fetches an event dropped because too many arrived during the first join’s read', async () => {
    const { hub, persistence, confirm } = await setUp(0);
    const { subscriber, frames } = recorder('a');
    const joined = hub.join(subscriber, SESSION, undefined, undefined);
    await persistence.readStarted; // reads last_seq 0
    const last = MAX_EARLY_EVENTS + 1;
    for (let seq = 1; seq <= last; seq++) confirm(seq); // the last one finds the held events full
    await settle();
    persistence.release();
    await joined;
    await settle();
    expect(frames).toEqual(['joined:0', ...seqs(1, last)]);
    hub.close();
  });

  it('queues at most MAX_QUEUED_EVENTS live events for a member replaying, and replays the rest', async () => {
    const { hub, persistence, confirm } = await setUp(5);
    persistence.release();
    const { subscriber, frames } = recorder('a');
    const fetches = persistence.holdFetches();
    const joined = hub.join(subscriber, SESSION, 0, undefined);
    await fetches.started; // replaying 1..5
    const last = 5 + MAX_QUEUED_EVENTS + 500;
    for (let seq = 6; seq <= last; seq++) confirm(seq);
    await settle();
    expect(hub.heldEvents(SESSION)).toBe(MAX_QUEUED_EVENTS);
    fetches.release();
    await joined;
    expect(frames).toEqual(['joined:5', ...seqs(1, last)]);
    hub.close();
  });
});

describe('a socket the gateway closes', () => {
  it('ends a gap fill whose last member left while it was sent a message', async () => {
    const { hub, persistence, confirm } = await setUp(0);
    persistence.release();
    const frames: string[] = [];
    const slowReader: Subscriber = {
      id: 'slow',
      send: () => undefined,
      // Closed as too slow by the first message of the fill (`ClientConnection.checkBackpressure`).
      sendEncoded: (data) => {
        frames.push(`seq:${(JSON.parse(data.toString()) as { message: Message }).message.seq}`);
        hub.leaveAll(slowReader);
      },
      caughtUp: async () => undefined,
    };
    await hub.join(slowReader, SESSION, undefined, undefined);
    persistence.stored = 2; // events 1 and 2 lost
    confirm(3);
    await settle();
    expect(frames).toEqual(['seq:1']);
    expect(persistence.fetchedAfter).toEqual([0]);
    hub.close();
  });

  /** A client that ignores the close frame: its socket stays open until the test says otherwise. */
  class StubbornSocket extends EventEmitter {
    readyState: number = WebSocket.OPEN;
    bufferedAmount = 0;
    send(): void {}
    ping(): void {}
    terminate(): void {}
    close(): void {
      this.readyState = WebSocket.CLOSING;
    }
  }

  it('leaves its sessions and stops its replay at once, and counts as closed once when the socket closes', async () => {
    const { hub, persistence, metrics } = await setUp(CATCH_UP_PAGE + 1);
    persistence.release();
    const ws = new StubbornSocket();
    const tcp: Duplex = new PassThrough();
    const connection = new ClientConnection(ws as unknown as WebSocket, tcp, {
      config: loadGatewayConfig({}),
      logger: createLogger({ name: 'hub-test', level: 'silent' }),
      metrics,
      verifier: {} as TokenVerifier,
      persistence: persistence.client,
      access: {} as SessionAccess,
      hub,
      expiries: new Deadlines<ClientConnection>(() => undefined),
      userConnections: new UserConnections(0),
      revocations: new TokenRevocations(),
    });
    const fetches = persistence.holdFetches();
    const joined = hub.join(connection, SESSION, 0, undefined);
    await fetches.started; // replaying the first of two pages
    connection.close(CloseCode.AuthFailed, 'token expired');
    expect(hub.isJoined(connection, SESSION)).toBe(false);
    fetches.release();
    await joined;
    expect(persistence.fetches).toBe(1);
    expect(hub.sessionCount()).toBe(0);
    ws.emit('close'); // the client's socket closes at last
    expect(hub.sessionCount()).toBe(0);
    expect((await metrics.connections.get()).values[0]?.value).toBe(0);
    hub.close();
  });
});
