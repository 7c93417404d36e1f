import { setImmediate as nextTurn } from 'node:timers/promises';
import type { JsMsg } from 'nats';
import { describe, expect, it } from 'vitest';
import { createTurnQueue, natsConnectOptions, toDurable, withoutCredentials } from './nats-bus.js';

describe('toDurable', () => {
  it('terminates with a bare +TERM: a consumer leader older than NATS 2.10 ignores +TERM <reason>', () => {
    const calls: unknown[][] = [];
    const msg = { term: (...args: unknown[]) => calls.push(args) } as unknown as JsMsg;
    toDurable(msg).term();
    expect(calls).toEqual([[]]);
  });
});

describe('createTurnQueue', () => {
  it('runs the jobs queued in one turn together, in order, after that turn and before the next', async () => {
    const inTurn = createTurnQueue();
    const ran: string[] = [];
    inTurn(() => ran.push('a'));
    await Promise.resolve();
    inTurn(() => ran.push('b'));
    expect(ran).toEqual([]);
    await nextTurn();
    expect(ran).toEqual(['a', 'b']);
    inTurn(() => ran.push('c'));
    await nextTurn();
    expect(ran).toEqual(['a', 'b', 'c']);
  });

  it('runs a job queued by a running job in the following turn', async () => {
    const inTurn = createTurnQueue();
    const ran: string[] = [];
    inTurn(() => {
      ran.push('first');
      inTurn(() => ran.push('second'));
    });
    await nextTurn();
    expect(ran).toEqual(['first']);
    await nextTurn();
    expect(ran).toEqual(['first', 'second']);
  });
});

describe('natsConnectOptions', () => {
  it('passes the credentials of the user info as options, and the servers without them', () => {
    expect(natsConnectOptions(['nats://gateway:4f9a%2Fb@nats.nats.svc:4222', 'nats://nats-1:4222'])).toEqual({
      servers: ['nats://nats.nats.svc:4222', 'nats://nats-1:4222'],
      user: 'gateway',
      pass: '4f9a/b',
    });
    expect(natsConnectOptions(['tls://s3cret-token@nats:4222'])).toEqual({ servers: ['tls://nats:4222'], token: 's3cret-token', tls: {} });
    expect(natsConnectOptions(['nats://127.0.0.1:4222'])).toEqual({ servers: ['nats://127.0.0.1:4222'] });
  });

  it('gives servers that nats.js parses as the host and port written', () => {
    // With the user info left in, nats.js took the first for an IPv6 address and the second for port 4.
    expect(withoutCredentials('nats://gateway:pw@nats:4222')).toBe('nats://nats:4222');
    expect(withoutCredentials('nats://gateway:4f9a@nats.nats.svc:4222')).toBe('nats://nats.nats.svc:4222');
    expect(withoutCredentials('nats://[::1]:4222')).toBe('nats://[::1]:4222');
    // A port that is the scheme's default stays written: nats.js would otherwise take 4222.
    expect(withoutCredentials('wss://gateway:pw@nats.example.com:443')).toBe('wss://nats.example.com:443');
    expect(withoutCredentials('ws://gateway:pw@nats:80/path')).toBe('ws://nats:80/path');
    expect(withoutCredentials('nats://gateway:p%40ss@nats:4222')).toBe('nats://nats:4222');
    // An unescaped @ in the password: the user info ends at the last one, as URL reads it.
    expect(withoutCredentials('nats://gateway:p@ss@nats:4222')).toBe('nats://nats:4222');
  });
});
