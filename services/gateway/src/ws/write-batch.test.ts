import { Duplex } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { batchWritesThisTurn } from './write-batch.js';

/** A socket that records each write call it gets from its stream: one entry per system call a real socket would make. */
function recordingSocket(): { socket: Duplex; calls: string[][] } {
  const calls: string[][] = [];
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      calls.push([chunk.toString()]);
      callback();
    },
    writev(chunks, callback) {
      calls.push(chunks.map(({ chunk }) => String(chunk)));
      callback();
    },
  });
  return { socket, calls };
}

describe('batchWritesThisTurn', () => {
  it('sends what is written to a socket in one turn in one write call, before the next turn', async () => {
    const { socket, calls } = recordingSocket();
    batchWritesThisTurn(socket);
    socket.write('new_message');
    batchWritesThisTurn(socket);
    socket.write('message_ack');
    expect(calls).toEqual([]);
    await nextTurn();
    expect(calls).toEqual([['new_message', 'message_ack']]);
  });

  it('keeps sockets apart, and starts afresh every turn', async () => {
    const a = recordingSocket();
    const b = recordingSocket();
    for (const { socket } of [a, b]) batchWritesThisTurn(socket);
    a.socket.write('a1');
    b.socket.write('b1');
    a.socket.write('a2');
    await nextTurn();
    batchWritesThisTurn(a.socket);
    a.socket.write('a3');
    await nextTurn();
    expect(a.calls).toEqual([['a1', 'a2'], ['a3']]);
    expect(b.calls).toEqual([['b1']]);
  });

  it('leaves a socket that is not batched to write at once', () => {
    const { socket, calls } = recordingSocket();
    socket.write('now');
    expect(calls).toEqual([['now']]);
  });

  it('tells a listener once the frames of the turn have been handed to its socket, not before', async () => {
    const { socket, calls } = recordingSocket();
    const seen: string[][][] = [];
    const listener = { flushed: () => seen.push(calls.map((call) => [...call])) };
    batchWritesThisTurn(socket, listener);
    socket.write('page-1');
    batchWritesThisTurn(socket, listener);
    socket.write('page-2');
    expect(seen).toEqual([]);
    await nextTurn();
    expect(seen).toEqual([[['page-1', 'page-2']]]);
  });
});
