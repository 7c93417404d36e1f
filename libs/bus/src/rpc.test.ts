import { createLogger } from '@switchboard/logging';
import { BusErrorCode, createSubjects } from '@switchboard/protocol';
import { TEST_NATS_URL } from '@switchboard/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Bus, BusError, type RegisteredService } from './bus.js';
import { connectNatsBus } from './nats-bus.js';
import { jsonEndpoint, requestJson } from './rpc.js';

const logger = createLogger({ name: 'rpc-test', level: 'silent' });
const subject = `rpc-test-${process.pid}.echo`;
const request = z.object({ outcome: z.enum(['reply', 'limited', 'unknown-wait', 'crash']) });
const reply = z.object({ ok: z.literal(true) });

let bus: Bus;
let service: RegisteredService;

beforeAll(async () => {
  bus = await connectNatsBus({
    servers: [TEST_NATS_URL],
    name: 'rpc-test',
    subjects: createSubjects(`rpc-test-${process.pid}`),
    logger,
  });
  const endpoint = jsonEndpoint({
    name: 'echo',
    subject,
    requestSchema: request,
    logger,
    async handler({ outcome }) {
      if (outcome === 'limited') throw new BusError(BusErrorCode.RateLimited, 'slow down', { retryAfterMs: 1234.2 });
      if (outcome === 'unknown-wait') throw new BusError(BusErrorCode.RateLimited, 'slow down', { retryAfterMs: Number.NaN });
      if (outcome === 'crash') throw new Error('a bug');
      return { ok: true as const };
    },
  });
  service = await bus.addService({ name: 'rpc-test', version: '0.0.1', description: 'rpc test', endpoints: [endpoint] });
});

afterAll(async () => {
  await service?.stop();
  await bus?.close();
});

const call = (body: unknown) =>
  requestJson(bus, subject, body, reply).then(
    (value) => value,
    (error: unknown) => error,
  );

describe('JSON endpoints over NATS', () => {
  it('answers with the handler result', async () => {
    expect(await call({ outcome: 'reply' })).toEqual({ ok: true });
  });

  it('carries a BusError code, message and retry-after (in whole milliseconds) to the caller', async () => {
    const error = await call({ outcome: 'limited' });
    expect(error).toBeInstanceOf(BusError);
    expect(error).toMatchObject({ code: BusErrorCode.RateLimited, message: 'slow down', retryAfterMs: 1235 });
  });

  it('leaves out a retry-after that is not a number of milliseconds, rather than answer what the caller cannot read', async () => {
    expect(await call({ outcome: 'unknown-wait' })).toMatchObject({ code: BusErrorCode.RateLimited, retryAfterMs: undefined });
  });

  it('answers anything else thrown as internal, without its message, and a bad request as invalid', async () => {
    expect(await call({ outcome: 'crash' })).toMatchObject({
      code: BusErrorCode.Internal,
      message: 'internal error',
      retryAfterMs: undefined,
    });
    expect(await call({ outcome: 'other' })).toMatchObject({ code: BusErrorCode.Invalid });
  });
});
