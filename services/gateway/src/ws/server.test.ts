import { once } from 'node:events';
import { createLogger } from '@switchboard/logging';
import { describe, expect, it } from 'vitest';
import { createWsServer } from './server.js';

describe('createWsServer', () => {
  it('logs an error raised once it listens (an accept that failed) instead of throwing it', async () => {
    const lines: string[] = [];
    const logger = createLogger({ name: 'test', destination: { write: (line: string) => lines.push(line) } });
    const server = createWsServer({
      maxFrameBytes: 1024,
      allowedOrigins: [],
      logger,
      isAccepting: () => true,
      onConnection: () => undefined,
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      expect(() => server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE' }))).not.toThrow();
      expect(lines.join('')).toContain('accept EMFILE');
    } finally {
      server.close();
    }
  });
});
