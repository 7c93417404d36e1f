import type { PersistenceClient } from '@switchboard/bus';
import { ErrorCode } from '@switchboard/protocol';
import type { VerifiedToken } from '@switchboard/tokens';
import { refuse } from '../errors.js';

export const DEFAULT_CACHE_SIZE = 50_000;

/**
 * Who may use a session: its customer, and any agent or admin (contract §3). A session's
 * customer never changes, so it is cached (bounded, oldest evicted first).
 */
export function createSessionAccess(persistence: PersistenceClient, maxEntries = DEFAULT_CACHE_SIZE) {
  const customers = new Map<number, number>();

  const customerOf = async (sessionId: number): Promise<number> => {
    const cached = customers.get(sessionId);
    if (cached !== undefined) return cached;
    const { session } = await persistence.call('sessions.get', { session_id: sessionId });
    remember(sessionId, session.customer_id);
    return session.customer_id;
  };

  const remember = (sessionId: number, customerId: number) => {
    if (customers.size >= maxEntries) {
      const oldest = customers.keys().next().value;
      if (oldest !== undefined) customers.delete(oldest);
    }
    customers.set(sessionId, customerId);
  };

  return {
    remember,
    /** @throws FrameError `forbidden`, BusError `not_found` / `unavailable`. */
    async authorize(user: VerifiedToken, sessionId: number): Promise<void> {
      const customerId = await customerOf(sessionId);
      if (user.role === 'user' && customerId !== user.userId) refuse(ErrorCode.Forbidden, `session ${sessionId} is not yours`);
    },
  };
}

export type SessionAccess = ReturnType<typeof createSessionAccess>;
