import { describe, expect, it } from 'vitest';
import { clientMsgIdOf, contentOf, type EventSink, type System } from '../src/driver.js';
import { phaseWarnings, runPhase } from '../src/load.js';
import { makePlan, type Plan } from '../src/plan.js';
import { Tracker } from '../src/tracker.js';
import { phaseResult } from './phase-result.js';

/** Acks and delivers every message at once, and delivers message 0 once more `lateMs` after the last send. */
function echoSystem(plan: Plan, sink: EventSink, total: number, lateMs: number): System {
  return {
    name: 'echo',
    label: 'echo',
    processes: [],
    infraPids: async () => ({}),
    connect: async () => undefined,
    send(connection, session, clientMsgId, content) {
      sink.ack(connection, clientMsgId);
      for (const member of plan.members[session] ?? []) sink.delivery(member, clientMsgId, content, undefined);
      if (clientMsgId === clientMsgIdOf(total - 1)) {
        const member = plan.members[0]?.[1] ?? 0;
        setTimeout(() => sink.delivery(member, clientMsgIdOf(0), contentOf(0, 0), undefined), lateMs);
      }
    },
    disconnect: async () => undefined,
    stop: async () => undefined,
  };
}

describe('runPhase', () => {
  it('counts a duplicate that arrives after everything expected has', async () => {
    const plan = makePlan({ sessions: 2, connections: 4 });
    const tracker = new Tracker(plan);
    const rate = 50;
    const durationS = 0.2;
    const system = echoSystem(plan, tracker, Math.round(rate * durationS), 200);

    const result = await runPhase(system, plan, tracker, {
      label: 'echo',
      rate,
      durationS,
      warmupS: 0,
      drainS: 2,
      log: () => undefined,
      progress: false,
    });

    expect(result.lost).toEqual({ acks: 0, deliveries: 0 });
    expect(result.duplicates).toBe(1);
  });
});

describe('phaseWarnings', () => {
  it('warns of frames the bench could not attribute and of connections closed under load', () => {
    expect(phaseWarnings(phaseResult())).toEqual([]);
    const generator = { ...phaseResult().generator, warnings: ['the load generator used 95% of a core'] };
    expect(phaseWarnings(phaseResult({ unknownFrames: 3, connectionsClosed: 1, generator }))).toEqual([
      'the load generator used 95% of a core',
      '3 frames the bench could not attribute to a message it sent (see the JSON)',
      '1 connection closed under load',
    ]);
  });
});
