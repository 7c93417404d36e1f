import { describe, expect, it } from 'vitest';
import { clientMsgIdOf, contentOf } from '../src/driver.js';
import { makePlan } from '../src/plan.js';
import { Tracker } from '../src/tracker.js';

describe('Tracker', () => {
  it('lets the load send what has fallen due at every ack and delivery, and counts sends made from there', () => {
    const plan = makePlan({ sessions: 1, connections: 2 });
    const tracker = new Tracker(plan);
    const first = tracker.register(0, 0, performance.now(), true);
    const activity: string[] = [];
    tracker.onActivity = () => {
      activity.push(`sent ${tracker.counters.sent} acked ${tracker.counters.acked} delivered ${tracker.counters.delivered}`);
      // As runPhase's hook does when a message is due: a send from inside the handler.
      if (tracker.counters.sent < 3) tracker.register(0, 1, performance.now(), true);
    };

    tracker.ack(0, clientMsgIdOf(first));
    tracker.delivery(0, clientMsgIdOf(first), contentOf(first, performance.now()), 1);
    tracker.delivery(1, clientMsgIdOf(first), contentOf(first, performance.now()), 1);

    // Called before each arrival is counted, so a send it makes goes out first.
    expect(activity).toEqual(['sent 1 acked 0 delivered 0', 'sent 2 acked 1 delivered 0', 'sent 3 acked 1 delivered 1']);
    expect(tracker.counters).toMatchObject({ sent: 3, acked: 1, delivered: 2, duplicates: 0, unknown: 0 });
    expect(tracker.outstanding(first, first + 1)).toEqual({ acks: 0, deliveries: 0 });
    expect(tracker.outstanding(first + 1, first + 3)).toEqual({ acks: 2, deliveries: 4 });
  });

  it("counts a delivery to a connection outside the message's session as a duplicate, not as one of its deliveries", () => {
    // Sessions 0 = [0, 1] and 1 = [2, 3]: connection 3 has the same index in its session as member 1 in session 0.
    const plan = makePlan({ sessions: 2, connections: 4 });
    const tracker = new Tracker(plan);
    const g = tracker.register(0, 0, performance.now(), true);
    tracker.ack(0, clientMsgIdOf(g));
    tracker.delivery(0, clientMsgIdOf(g), contentOf(g, performance.now()), undefined);
    tracker.delivery(3, clientMsgIdOf(g), contentOf(g, performance.now()), undefined);

    expect(tracker.counters).toMatchObject({ delivered: 1, duplicates: 1 });
    expect(tracker.outstanding(g, g + 1)).toEqual({ acks: 0, deliveries: 1 });
  });
});
