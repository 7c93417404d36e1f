import type { Stoppable } from './run-main.js';

/**
 * Starts a service part by part. `running` records each part once it runs; should a later step
 * fail (its port taken, NATS gone), the parts already running are stopped again, the last first,
 * and then the failure is thrown. A process exits then anyway, but a caller that runs services in
 * its own process (the one-process mode, tests) carries on, and nothing must be left behind.
 */
export async function startInParts<T>(start: (running: <P extends Stoppable>(part: P) => P) => Promise<T>): Promise<T> {
  const parts: Stoppable[] = [];
  try {
    return await start((part) => {
      parts.push(part);
      return part;
    });
  } catch (error) {
    for (const part of parts.reverse()) {
      try {
        await part.stop();
      } catch {
        // The start's own failure is the one to report; the other parts are stopped all the same.
      }
    }
    throw error;
  }
}
