import type { EndpointStats } from 'nats';
import { describe, expect, it } from 'vitest';
import { formatOverview, toJsonEntries, toRows } from '../src/overview.js';

const started = new Date(Date.now() - 90_000).toISOString();

function instance(name: string, id: string, data: unknown): EndpointStats {
  return {
    name,
    id,
    version: '0.1.0',
    started,
    endpoints: [
      {
        name: 'status',
        subject: `${name}.status`,
        queue_group: 'q',
        num_requests: 3,
        num_errors: 0,
        processing_time: 0,
        average_processing_time: 0,
        last_error: '',
        data,
      },
    ],
  } as unknown as EndpointStats;
}

describe('toRows', () => {
  it("takes only this installation's services, not those of a prefix that starts with it", () => {
    const rows = toRows(
      [
        instance('switchboard-gateway', 'g1', { connections: 2 }),
        instance('switchboard-staging-gateway', 's1', { connections: 7 }),
        instance('switchboard-staging-persistence', 's2', { stored: 1 }),
        instance('switchboard-auth', 'a1', { logins: 1 }),
      ],
      'switchboard',
    );
    expect(rows.map((row) => [row.service, row.instance])).toEqual([
      ['auth', 'a1'],
      ['gateway', 'g1'],
    ]);
  });

  it('keeps only the figures that are finite numbers, errors included', () => {
    const [row] = toRows(
      [instance('switchboard-gateway', 'g1', { connections: 2, errors: '5', label: 'x', nested: { a: 1 }, broken: null, sessions: 1 })],
      'switchboard',
    );
    expect(row?.errors).toBe(0);
    expect(row?.figures).toEqual({ connections: 2, sessions: 1 });
    expect(toRows([instance('switchboard-gateway', 'g1', [7, 8])], 'switchboard')[0]?.figures).toEqual({});
  });
});

describe('formatOverview', () => {
  it("adds up what each instance counts, shows the shared consumer's backlog once, and leaves sessions out of the totals", () => {
    const rows = toRows(
      [
        instance('switchboard-persistence', 'p1', { stored: 10, pending: 100, ackPending: 4 }),
        instance('switchboard-persistence', 'p2', { stored: 5, pending: 100, ackPending: 4 }),
        instance('switchboard-gateway', 'g1', { connections: 2, sessions: 1 }),
        instance('switchboard-gateway', 'g2', { connections: 3, sessions: 1 }),
      ],
      'switchboard',
    );
    const summary = formatOverview(rows).trimEnd().split('\n').slice(-2);
    expect(summary).toEqual(['gateway: 2 instances, connections 5', 'persistence: 2 instances, stored 15, pending 100, ackPending 4']);
  });

  it('names each service with no instance answering, in the order of the totals', () => {
    const rows = toRows([instance('switchboard-persistence', 'p1', { stored: 1 })], 'switchboard');
    const summary = formatOverview(rows).trimEnd().split('\n').slice(-3);
    expect(summary).toEqual(['auth: no instance answered', 'gateway: no instance answered', 'persistence: 1 instance, stored 1']);
  });
});

describe('toJsonEntries', () => {
  it('lists each service with no instance answering as missing, in its place among the rows', () => {
    const rows = toRows(
      [
        instance('switchboard-persistence', 'p2', {}),
        instance('switchboard-persistence', 'p1', {}),
        instance('switchboard-auth', 'a1', {}),
      ],
      'switchboard',
    );
    expect(toJsonEntries(rows).map((entry) => ('missing' in entry ? [entry.service, 'missing'] : [entry.service, entry.instance]))).toEqual(
      [
        ['auth', 'a1'],
        ['gateway', 'missing'],
        ['persistence', 'p1'],
        ['persistence', 'p2'],
      ],
    );
  });
});
