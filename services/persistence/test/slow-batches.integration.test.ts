import { metric, removeSlowInserts, slowInserts, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support.js';

/**
 * Slow commits one after another: a message waiting behind several of them waits longer than the
 * ack wait in all, and must not be redelivered for it, whether it waits held by the pump or
 * fetched ahead of it.
 */

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness('persistence_slow_batches');
});

afterAll(async () => {
  await harness?.close();
});

describe('messages waiting behind many slow batches', () => {
  it('are kept alive and stored once each, with no redelivery', async () => {
    // Batches of two, each taking 0.8 s: ten messages wait up to 4 s, twice the ack wait.
    const env = { INBOUND_ACK_WAIT: '2s', BATCH_MAX: '2' };
    await (await harness.startPersistence(env)).stop();
    await slowInserts(harness.database.url, 800);

    const [session = 0] = await harness.createSessions(1);
    const ids = Array.from({ length: 10 }, (_, index) => `slow-${index}`);
    for (const id of ids) await harness.publish(session, id);
    const persistence = await harness.startPersistence(env);

    await waitFor(async () => (await harness.stored()).length === ids.length, 30_000, 'every message to be stored');
    const stored = await harness.stored();
    expect(stored.map((row) => row.client_msg_id)).toEqual(ids);
    expect(stored.map((row) => row.seq)).toEqual(ids.map((_, index) => index + 1));
    expect(await metric(persistence, 'switchboard_persistence_redeliveries_total')).toBe(0);
    await persistence.stop();
  }, 60_000);

  it('are kept alive from the moment they are fetched when each batch takes over a third of the ack wait', async () => {
    // Batches of five, each taking 1.7 s against an ack wait of 4 s: the pump holds 20 messages
    // and waits for the database with more fetched. Messages fetched ahead and not handed over
    // while two such batches ran passed the ack wait before they were kept alive.
    const env = { INBOUND_ACK_WAIT: '4s', BATCH_MAX: '5' };
    await removeSlowInserts(harness.database.url);
    await slowInserts(harness.database.url, 1_700);

    const [session = 0] = await harness.createSessions(1);
    const ids = Array.from({ length: 40 }, (_, index) => `ahead-${index}`);
    for (const id of ids) await harness.publish(session, id);
    const persistence = await harness.startPersistence(env);

    const storedInSession = async () => (await harness.stored()).filter((row) => row.session_id === session);
    await waitFor(async () => (await storedInSession()).length === ids.length, 40_000, 'every message to be stored');
    const stored = await storedInSession();
    expect(stored.map((row) => row.client_msg_id)).toEqual(ids);
    expect(stored.map((row) => row.seq)).toEqual(ids.map((_, index) => index + 1));
    expect(await metric(persistence, 'switchboard_persistence_redeliveries_total')).toBe(0);
  }, 60_000);
});
