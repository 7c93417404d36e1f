import { describe, expect, it } from 'vitest';
import { startInParts } from './start-in-parts.js';

describe('startInParts', () => {
  it('stops the parts that run, the last first, when a later step fails, and throws its failure, whatever their stops throw', async () => {
    const stopped: string[] = [];
    const part = (name: string, fails = false) => ({
      stop: async () => {
        stopped.push(name);
        if (fails) throw new Error(`${name} would not stop`);
      },
    });
    const failure = new Error('port taken');
    await expect(
      startInParts(async (running) => {
        running(part('bus service'));
        running(part('consumer', true));
        running({
          stop: (): Promise<void> => {
            stopped.push('timer');
            throw new Error('the timer would not stop');
          },
        });
        running(part('listener'));
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(stopped).toEqual(['listener', 'timer', 'consumer', 'bus service']);
  });

  it('returns what the start returns and stops nothing when it succeeds', async () => {
    const stopped: string[] = [];
    const service = await startInParts(async (running) => {
      const listener = running({ stop: async () => void stopped.push('listener') });
      return { port: 1234, listener };
    });
    expect(service.port).toBe(1234);
    expect(stopped).toEqual([]);
  });
});
