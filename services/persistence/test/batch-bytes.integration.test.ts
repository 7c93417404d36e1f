import { metric, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support.js';

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness('persistence_batch_bytes');
});

afterAll(async () => {
  await harness?.close();
});

describe('BATCH_MAX_BYTES', () => {
  it('stores a backlog of large messages in batches within it, one over it alone, all in order', async () => {
    const env = { BATCH_MAX_BYTES: '5000' };
    await (await harness.startPersistence(env)).stop();
    const [session = 0] = await harness.createSessions(1);
    // About 2.2 KB each as published: two fit in a batch, three do not.
    const ids = Array.from({ length: 30 }, (_, index) => `large-${index}`);
    for (const id of ids) await harness.publish(session, id, 'x'.repeat(2_000));
    await harness.publish(session, 'over', 'y'.repeat(6_000));
    const persistence = await harness.startPersistence(env);

    await waitFor(async () => (await harness.stored()).length === ids.length + 1, 30_000, 'the backlog to be stored');
    expect((await harness.stored()).map((row) => row.client_msg_id)).toEqual([...ids, 'over']);
    const batches = await metric(persistence, 'switchboard_persistence_batch_size_count');
    // Before, the backlog went in batches of up to BATCH_MAX (500) messages, whatever their size.
    expect(await metric(persistence, 'switchboard_persistence_batch_size_bucket', { le: '2' })).toBe(batches);
    expect(await metric(persistence, 'switchboard_persistence_batch_size_sum')).toBe(ids.length + 1);
    expect(await harness.deadLetters()).toBe(0);
    await persistence.stop();
  }, 60_000);
});
