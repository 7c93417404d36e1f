import { createMemoryBus, encodeJson, type PersistenceClient } from '@switchboard/bus';
import { createLogger } from '@switchboard/logging';
import { createSubjects, type Message, type ServerFrame } from '@switchboard/protocol';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createGatewayMetrics } from '../metrics.js';
import { createSessionHub, type Subscriber } from './session-hub.js';

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

/** A persistence whose `sessions.get` reads when called and answers only when released; it holds messages 1..stored. */
function persistenceStub(initiallyStored: number) {
  let readStarted!: () => void;
  let releaseRead!: () => void;
  const started = new Promise<void>((resolve) => {
    readStarted = resolve;
  });
  const released = new Promise<void>((resolve) => {
    releaseRead = resolve;
  });
  const stub = {
    stored: initiallyStored,
    /** `messages.after` requests answered: fetches of missing messages. */
    fetches: 0,
    /** `sessions.heads` fails while set, as with persistence down or not upgraded yet. */
    headsFailing: false,
    readStarted: started,
    release: () => releaseRead(),
    client: {
      async call(endpoint: string, request: { after_seq?: number }) {
        if (endpoint === 'sessions.get') {
          const lastSeq = stub.stored;
          readStarted();
          await released;
          const session = { id: SESSION, customer_id: 7, status: 'open', subject: null, created_at: new Date(0).toISOString() };
          return { session: { ...session, last_seq: lastSeq } };
        }
        if (endpoint === 'sessions.heads') {
          if (stub.headsFailing) throw new Error('no responders');
          const ids = (request as { session_ids: number[] }).session_ids;
          return { heads: ids.map((id) => ({ id, last_seq: stub.stored })) };
        }
        if (endpoint === 'messages.after') {
          stub.fetches++;
          const after = request.after_seq ?? 0;
          return { messages: Array.from({ length: Math.max(0, stub.stored - after) }, (_, i) => message(after + i + 1)) };
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
  };
  return { subscriber, frames };
}

async function setUp(stored: number, logLines?: string[]) {
  const bus = createMemoryBus();
  const persistence = persistenceStub(stored);
  const hub = createSessionHub({
    bus,
    subjects,
    persistence: persistence.client,
    logger: logLines
      ? createLogger({ name: 'hub-test', level: 'info', destination: { write: (line: string) => logLines.push(line) } })
      : createLogger({ name: 'hub-test', level: 'silent' }),
    metrics: createGatewayMetrics(new Registry()),
    gapWaitMs: 20,
    headGraceMs: 30,
  });
  await hub.ready;
  const confirm = (seq: number) => {
    persistence.stored = Math.max(persistence.stored, seq);
    bus.publish(subjects.confirmed(SESSION), encodeJson({ message: message(seq) }));
  };
  return { hub, persistence, confirm };
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

  it('does not keep a subscriber that left while its join was in progress', async () => {
    const { hub, persistence } = await setUp(0);
    const { subscriber, frames } = recorder('b');
    const joined = hub.join(subscriber, SESSION, undefined, undefined);
    await persistence.readStarted;
    hub.leaveAll(subscriber); // the socket closed
    persistence.release();
    await joined;
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
});
