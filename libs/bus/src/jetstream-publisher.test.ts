import { randomBytes } from 'node:crypto';
import { TEST_NATS_URL } from '@switchboard/testing';
import { connect, DiscardPolicy, type JetStreamManager, type NatsConnection, StorageType } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJetStreamPublisher, PublishError } from './jetstream-publisher.js';

// The machine's NATS with JetStream, as every test on the message path.

describe('createJetStreamPublisher (real NATS)', () => {
  const prefix = `pubtest_${randomBytes(4).toString('hex')}`;
  const stream = prefix.toUpperCase();
  const encoder = new TextEncoder();
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  beforeAll(async () => {
    nc = await connect({ servers: TEST_NATS_URL, inboxPrefix: '_INBOX.pubtest' });
    jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.in.>`], storage: StorageType.Memory, duplicate_window: 60e9 });
    // Holds one message and refuses the next: a PubAck with an error.
    await jsm.streams.add({
      name: `${stream}_FULL`,
      subjects: [`${prefix}.full`],
      storage: StorageType.Memory,
      max_msgs: 1,
      discard: DiscardPolicy.New,
    });
  });

  afterAll(async () => {
    await jsm.streams.delete(stream).catch(() => undefined);
    await jsm.streams.delete(`${stream}_FULL`).catch(() => undefined);
    await nc.close();
  });

  it('resolves with the PubAck, and a second copy with the same message id is a duplicate the stream does not store', async () => {
    const publisher = createJetStreamPublisher(nc, '_INBOX.pubtest');
    const first = await publisher.publish(`${prefix}.in.a`, encoder.encode('one'), 'id-1', 2_000);
    const again = await publisher.publish(`${prefix}.in.a`, encoder.encode('one'), 'id-1', 2_000);
    const second = await publisher.publish(`${prefix}.in.b`, encoder.encode('two'), 'id-2', 2_000);
    expect(first).toEqual({ stream, seq: expect.any(Number), duplicate: false });
    expect(again).toEqual({ stream, seq: first.seq, duplicate: true });
    expect(second).toEqual({ stream, seq: first.seq + 1, duplicate: false });

    const stored = await jsm.streams.getMessage(stream, { seq: first.seq });
    expect(new TextDecoder().decode(stored.data)).toBe('one');
    expect(stored.header.get('Nats-Msg-Id')).toBe('id-1');
    expect((await jsm.streams.info(stream)).state.messages).toBe(2);
    expect(publisher.pending()).toBe(0);
    publisher.close();
  });

  it('settles a thousand concurrent publishes, each with its own PubAck, in stream order', async () => {
    const publisher = createJetStreamPublisher(nc, '_INBOX.pubtest');
    const acks = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) => publisher.publish(`${prefix}.in.many`, encoder.encode(`m${i}`), `many-${i}`, 5_000)),
    );
    const seqs = acks.map((ack) => ack.seq);
    expect(new Set(seqs).size).toBe(1_000);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(acks.every((ack) => !ack.duplicate)).toBe(true);
    expect(publisher.pending()).toBe(0);
    publisher.close();
  });

  it('rejects, and does not throw, when nats.js refuses the message id as a header value', async () => {
    const publisher = createJetStreamPublisher(nc, '_INBOX.pubtest');
    let published: Promise<unknown> | undefined;
    expect(() => {
      published = publisher.publish(`${prefix}.in.c`, encoder.encode('x'), 'line\nbreak', 2_000);
    }).not.toThrow();
    const failure = await published?.catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(PublishError);
    expect((failure as PublishError).reason).toBe('refused');
    expect(publisher.pending()).toBe(0);
    publisher.close();
  });

  it('rejects with "no responders" when no stream takes the subject', async () => {
    const publisher = createJetStreamPublisher(nc, '_INBOX.pubtest');
    const failure = await publisher.publish(`${prefix}.nowhere`, encoder.encode('x'), 'id-x', 2_000).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(PublishError);
    expect((failure as PublishError).reason).toBe('no responders');
    publisher.close();
  });

  it('rejects with "refused" and the stream\'s reason when the stream refuses the message', async () => {
    const publisher = createJetStreamPublisher(nc, '_INBOX.pubtest');
    await publisher.publish(`${prefix}.full`, encoder.encode('first'), 'full-1', 2_000);
    const failure = await publisher.publish(`${prefix}.full`, encoder.encode('second'), 'full-2', 2_000).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(PublishError);
    expect((failure as PublishError).reason).toBe('refused');
    expect((failure as PublishError).message).toMatch(/maximum messages exceeded/i);
    publisher.close();
  });

  it('rejects with "timed out" when a listener takes the subject and never answers, and forgets the publish', async () => {
    const silent = nc.subscribe(`${prefix}.silent`);
    await nc.flush();
    const publisher = createJetStreamPublisher(nc, '_INBOX.pubtest');
    const started = performance.now();
    const failure = await publisher.publish(`${prefix}.silent`, encoder.encode('x'), 'id-s', 300).catch((error: unknown) => error);
    const waited = performance.now() - started;
    expect((failure as PublishError).reason).toBe('timed out');
    // The deadline is checked every 100 ms.
    expect(waited).toBeGreaterThanOrEqual(300);
    expect(publisher.pending()).toBe(0);
    silent.unsubscribe();
    publisher.close();
  });

  it('close() fails what is in flight and refuses new publishes', async () => {
    const silent = nc.subscribe(`${prefix}.silent2`);
    await nc.flush();
    const publisher = createJetStreamPublisher(nc, '_INBOX.pubtest');
    const inFlight = publisher.publish(`${prefix}.silent2`, encoder.encode('x'), 'id-c', 10_000).catch((error: unknown) => error);
    publisher.close();
    expect(((await inFlight) as PublishError).reason).toBe('closed');
    const after = await publisher.publish(`${prefix}.in.a`, encoder.encode('y'), 'id-d', 1_000).catch((error: unknown) => error);
    expect((after as PublishError).reason).toBe('closed');
    silent.unsubscribe();
  });
});
