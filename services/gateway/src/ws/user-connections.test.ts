import { describe, expect, it } from 'vitest';
import { UserConnections } from './user-connections.js';

describe('UserConnections', () => {
  it('takes up to max sockets per user, each user on its own, and one more once one is removed', () => {
    const connections = new UserConnections(2);
    expect([connections.tryAdd(1), connections.tryAdd(1), connections.tryAdd(1)]).toEqual([true, true, false]);
    expect(connections.tryAdd(2)).toBe(true);
    expect(connections.count(1)).toBe(2);
    connections.remove(1);
    expect(connections.tryAdd(1)).toBe(true);
    expect(connections.tryAdd(1)).toBe(false);
  });

  it('counts nothing for a user whose sockets have all gone, and bounds nothing at 0', () => {
    const bounded = new UserConnections(1);
    bounded.tryAdd(7);
    bounded.remove(7);
    expect(bounded.count(7)).toBe(0);
    const unbounded = new UserConnections(0);
    for (let i = 0; i < 1_000; i++) expect(unbounded.tryAdd(7)).toBe(true);
    expect(unbounded.count(7)).toBe(1_000);
  });
});
