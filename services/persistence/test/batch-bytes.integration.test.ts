import { query, waitFor } from '@switchboard/testing';
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
    // Each message stored notes its transaction: the batches, as committed.
    const url = harness.database.url;
    await query(url, 'create table batch_log (client_msg_id text, tx bigint)');
    await query(
      url,
      'create function log_batch() returns trigger language plpgsql as $$ begin insert into batch_log values (new.client_msg_id, txid_current()); return new; end $$',
    );
    await query(url, 'create trigger log_batch after insert on messages for each row execute function log_batch()');
    const [session = 0] = await harness.createSessions(1);
    // About 2.2 KB each as published: two fit in a batch, three do not; the one of 6 KB fits with none.
    const ids = Array.from({ length: 31 }, (_, index) => `large-${index}`);
    for (const id of ids.slice(0, 15)) await harness.publish(session, id, 'x'.repeat(2_000));
    await harness.publish(session, 'over', 'y'.repeat(6_000));
    for (const id of ids.slice(15)) await harness.publish(session, id, 'x'.repeat(2_000));
    const persistence = await harness.startPersistence(env);

    await waitFor(async () => (await harness.stored()).length === ids.length + 1, 30_000, 'the backlog to be stored');
    expect((await harness.stored()).map((row) => row.client_msg_id)).toEqual([...ids.slice(0, 15), 'over', ...ids.slice(15)]);
    const batches = await query<{ ids: string[] }>(url, 'select array_agg(client_msg_id) as ids from batch_log group by tx');
    // Before, the backlog went in batches of up to BATCH_MAX (500) messages, whatever their size.
    expect(Math.max(...batches.map((batch) => batch.ids.length))).toBeLessThanOrEqual(2);
    expect(batches.find((batch) => batch.ids.includes('over'))?.ids).toEqual(['over']);
    expect(await harness.deadLetters()).toBe(0);
    await persistence.stop();
  }, 60_000);
});
