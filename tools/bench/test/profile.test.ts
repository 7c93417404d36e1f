import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { summarizeHeapProfiles } from '../src/profile.js';

const dir = mkdtempSync(join(tmpdir(), 'bench-heap-profile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const frame = (functionName: string, url: string, lineNumber: number) => ({ functionName, url, lineNumber, columnNumber: 0, scriptId: 1 });

describe('summarizeHeapProfiles', () => {
  it('adds up what each function allocated, and each package, over the whole tree', () => {
    const deliver = frame('deliver', 'file:///repo/services/gateway/dist/broker/session-hub.js', 53);
    const profile = {
      head: {
        callFrame: frame('(root)', '', -1),
        selfSize: 0,
        children: [
          { callFrame: deliver, selfSize: 3_000_000, children: [] },
          {
            callFrame: frame('processMsg', 'file:///repo/node_modules/nats/lib/nats-base-client/protocol.js', 600),
            selfSize: 500_000,
            // The same function reached by another path counts once, with both its sizes.
            children: [{ callFrame: deliver, selfSize: 1_000_000, children: [] }],
          },
          { callFrame: frame('parse', 'node:internal/streams/readable', 10), selfSize: 500_000, children: [] },
        ],
      },
      samples: [],
    };
    writeFileSync(join(dir, '1.heapprofile'), JSON.stringify(profile));
    writeFileSync(join(dir, '1.cpuprofile'), '{}');

    const [summary, ...others] = summarizeHeapProfiles(dir);
    expect(others).toEqual([]);
    expect(summary?.megabytes).toBe(5);
    expect(summary?.top[0]).toEqual({
      name: 'deliver',
      where: 'services/gateway/dist/broker/session-hub.js:54',
      megabytes: 4,
      percent: 80,
    });
    expect(summary?.byArea).toEqual([
      { area: 'services/gateway', megabytes: 4, percent: 80 },
      { area: 'nats', megabytes: 0.5, percent: 10 },
      { area: 'node: internal', megabytes: 0.5, percent: 10 },
    ]);
  });
});
