import { metric, slowInserts, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support.js';

/**
 * Slow commits, each shorter than the keep-alive's quarter of the ack wait, one after another: a
 * message waiting behind several of them waits longer than the ack wait in all, and must not be
 * redelivered for it.
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
  }, 60_000);
});
