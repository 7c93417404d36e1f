/** Who is connected where and joined to what: the same for every system under test. */
export interface Plan {
  readonly connections: number;
  readonly sessions: number;
  /** The connections joined to each session; the first is the session's customer. */
  readonly members: readonly (readonly number[])[];
  /** The session of each connection. */
  readonly sessionOf: Int32Array;
  /** The index of each connection among its session's members. */
  readonly localOf: Int32Array;
  readonly maxMembers: number;
}

export interface PlanOptions {
  sessions: number;
  /** Connections in all; spread evenly over the sessions (ignored when `membersRange` is set). */
  connections?: number;
  /** Members per session drawn uniformly from [min, max] (seeded), e.g. 2–10. */
  membersRange?: readonly [number, number];
  seed?: number;
}

/** A small seeded PRNG (mulberry32), so that a plan is the same on every run. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makePlan(options: PlanOptions): Plan {
  const { sessions } = options;
  if (sessions < 1) throw new Error('at least one session');
  const counts: number[] = [];
  if (options.membersRange) {
    const [min, max] = options.membersRange;
    const random = prng(options.seed ?? 1);
    for (let s = 0; s < sessions; s++) counts.push(min + Math.floor(random() * (max - min + 1)));
  } else {
    const connections = options.connections ?? sessions * 2;
    if (connections < sessions) throw new Error(`${connections} connections cannot fill ${sessions} sessions`);
    const base = Math.floor(connections / sessions);
    for (let s = 0; s < sessions; s++) counts.push(base + (s < connections % sessions ? 1 : 0));
  }
  const connections = counts.reduce((sum, count) => sum + count, 0);
  const sessionOf = new Int32Array(connections);
  const localOf = new Int32Array(connections);
  const members: number[][] = [];
  let next = 0;
  for (const [s, count] of counts.entries()) {
    const list: number[] = [];
    for (let local = 0; local < count; local++) {
      sessionOf[next] = s;
      localOf[next] = local;
      list.push(next++);
    }
    members.push(list);
  }
  return { connections, sessions, members, sessionOf, localOf, maxMembers: Math.max(...counts) };
}
