import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileEntry {
  name: string;
  where: string;
  selfMs: number;
  selfPercent: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Time not idle (the program, GC and native code). */
  busyMs: number;
  top: ProfileEntry[];
  /** Self time by package or area (a node_modules package, node internals, GC, the service's own code). */
  byArea: { area: string; selfMs: number; selfPercent: number }[];
}

const areaOf = (url: string, name: string): string => {
  if (name === '(garbage collector)') return 'garbage collector';
  if (name === '(program)') return 'native (program)';
  if (name === '(idle)') return 'idle';
  if (url === '') return 'native / V8 builtins';
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`;
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + 13).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const match = /\/(services|libs|apps)\/([^/]+)\//.exec(url);
  return match ? `${match[1]}/${match[2]}` : url;
};

const shortUrl = (url: string) => {
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) return url.slice(modules + 13);
  const match = /\/((services|libs|apps|tools)\/.*)$/.exec(url);
  return match?.[1] ?? url;
};

type CallFrame = ProfileNode['callFrame'];

/**
 * An amount (self time, bytes allocated) added up per function and per area, from the call
 * frames of a CPU or heap profile; `ranked` gives the largest of each, largest first.
 */
function tallyByFrame() {
  const byFunction = new Map<string, { name: string; where: string; amount: number }>();
  const byArea = new Map<string, number>();
  return {
    add({ functionName, url, lineNumber }: CallFrame, amount: number) {
      const name = functionName || '(anonymous)';
      const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : '';
      const key = `${name} ${where}`;
      const entry = byFunction.get(key) ?? { name, where, amount: 0 };
      entry.amount += amount;
      byFunction.set(key, entry);
      const area = areaOf(url, name);
      byArea.set(area, (byArea.get(area) ?? 0) + amount);
    },
    ranked(top: number) {
      return {
        functions: [...byFunction.values()].sort((a, b) => b.amount - a.amount).slice(0, top),
        areas: [...byArea.entries()]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 15)
          .map(([area, amount]) => ({ area, amount })),
      };
    },
  };
}

/** Self time per function of a V8 `.cpuprofile` (as written by `node --cpu-prof`). */
export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] ?? 0;
    // A sample's delta is the time until the next one.
    const delta = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  }
  const tally = tallyByFrame();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    total += us;
    if (node.callFrame.functionName === '(idle)') idle += us;
    else tally.add(node.callFrame, us);
  }
  const busy = total - idle;
  const percent = (us: number) => Math.round((us / Math.max(1, busy)) * 1000) / 10;
  const { functions, areas } = tally.ranked(top);
  return {
    file,
    totalMs: Math.round(total / 1000),
    busyMs: Math.round(busy / 1000),
    top: functions.map(({ name, where, amount }) => ({ name, where, selfMs: Math.round(amount / 1000), selfPercent: percent(amount) })),
    byArea: areas.map(({ area, amount }) => ({ area, selfMs: Math.round(amount / 1000), selfPercent: percent(amount) })),
  };
}

/** Every file under `dir` (one folder per service) whose name ends with `suffix`. */
const profilesIn = (dir: string, suffix: string) =>
  readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith(suffix))
    .sort()
    .map((name) => join(dir, name));

/** Every CPU profile under `dir` (one folder per service). */
export function summarizeProfiles(dir: string, top = 25): ProfileSummary[] {
  return profilesIn(dir, '.cpuprofile').map((file) => summarizeProfile(file, top));
}

interface HeapProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapProfileNode[];
}

export interface HeapProfileEntry {
  name: string;
  where: string;
  megabytes: number;
  percent: number;
}

export interface HeapProfileSummary {
  file: string;
  /** Bytes allocated in the window, estimated from the samples, in MB. */
  megabytes: number;
  top: HeapProfileEntry[];
  /** Allocations by package or area, as for CPU profiles. */
  byArea: { area: string; megabytes: number; percent: number }[];
}

/**
 * Allocations per function of a V8 sampling heap profile (`.heapprofile`, as the Memory tab of
 * Chrome's DevTools reads it), by the function that allocated.
 */
export function summarizeHeapProfile(file: string, top = 25): HeapProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { head: HeapProfileNode };
  const tally = tallyByFrame();
  let total = 0;
  const visit = (node: HeapProfileNode) => {
    if (node.selfSize > 0) {
      tally.add(node.callFrame, node.selfSize);
      total += node.selfSize;
    }
    for (const child of node.children) visit(child);
  };
  visit(profile.head);
  const megabytes = (bytes: number) => Math.round(bytes / 1e4) / 100;
  const percent = (bytes: number) => Math.round((bytes / Math.max(1, total)) * 1000) / 10;
  const { functions, areas } = tally.ranked(top);
  return {
    file,
    megabytes: megabytes(total),
    top: functions.map(({ name, where, amount }) => ({ name, where, megabytes: megabytes(amount), percent: percent(amount) })),
    byArea: areas.map(({ area, amount }) => ({ area, megabytes: megabytes(amount), percent: percent(amount) })),
  };
}

/** Every heap profile under `dir` (one folder per service). */
export function summarizeHeapProfiles(dir: string, top = 25): HeapProfileSummary[] {
  return profilesIn(dir, '.heapprofile').map((file) => summarizeHeapProfile(file, top));
}
