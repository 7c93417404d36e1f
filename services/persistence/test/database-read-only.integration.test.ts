import { createPersistenceClient } from '@switchboard/bus';
import { metric, waitFor } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failureOf, type Harness, setReadOnly, sleep, startHarness } from './support.js';

/**
 * A database that is up but cannot take writes (SQLSTATE 25006: a primary demoted to a standby
 * in a failover, `DATABASE_URL` still reaching it). It says nothing about the messages: they must
 * be kept, stored when writes come back, never set aside or dropped.
 */

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness('persistence_read_only');
});

afterAll(async () => {
  if (harness) await setReadOnly(harness.database, false).catch(() => undefined);
  await harness?.close();
});

describe('a database that cannot take writes for a while', () => {
  it('keeps every message until it can, then stores each once and in order; nothing is dead-lettered or redelivered', async () => {
    // Two deliveries of 2 s: a message dropped from hand twice is never delivered again.
    const persistence = await harness.startPersistence({ INBOUND_ACK_WAIT: '2s', INBOUND_MAX_DELIVER: '2' });
    const sessions = await harness.createSessions(3);
    await setReadOnly(harness.database, true);

    const expected = new Map<number, string[]>(sessions.map((session) => [session, []]));
    for (let i = 0; i < 5; i++)
      for (const session of sessions) {
        await harness.publish(session, `m${i}`);
        expected.get(session)?.push(`m${i}`);
      }
    // Read-only for longer than both deliveries' ack waits and the pauses after a failed batch.
    await sleep(7_000);
    expect(await harness.stored()).toEqual([]);

    // The API answers `unavailable`, which callers retry, not `internal`.
    const client = createPersistenceClient(harness.bus, harness.subjects);
    expect(await failureOf(client.call('sessions.create', { customer_id: 1, subject: null }))).toMatchObject({ code: 'unavailable' });

    await setReadOnly(harness.database, false);
    await waitFor(async () => (await harness.stored()).length >= 15, 20_000, 'every message to be stored');
    await sleep(1_000);

    const stored = await harness.stored();
    for (const session of sessions) {
      const own = stored.filter((row) => row.session_id === session);
      expect(own.map((row) => row.client_msg_id)).toEqual(expected.get(session));
      expect(own.map((row) => row.seq)).toEqual([1, 2, 3, 4, 5]);
    }
    expect(stored).toHaveLength(15);
    expect(await harness.deadLetters()).toBe(0);
    expect(await metric(persistence, 'switchboard_persistence_messages_total', { outcome: 'dead_lettered' })).toBe(0);
    expect(await metric(persistence, 'switchboard_persistence_redeliveries_total')).toBe(0);
    expect(await metric(persistence, 'switchboard_persistence_store_retries_total')).toBeGreaterThan(0);
    expect(persistence.logs.some((line) => line.includes('splitting it in halves'))).toBe(false);
  }, 60_000);
});
