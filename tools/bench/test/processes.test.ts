import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import {
  busyBetween,
  localPortsTo,
  machineTicks,
  parseMachineTicks,
  pidsByName,
  pidsListeningOn,
  procSchedSeconds,
} from '../src/processes.js';

describe('localPortsTo', () => {
  const server = createServer();
  afterAll(() => new Promise((resolve) => server.close(resolve)));

  it("finds the ports a process's TCP connections to a given port come from, and only those", async () => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const clients = [connect(port, '127.0.0.1'), connect(port, '127.0.0.1')];
    await Promise.all(clients.map((client) => once(client, 'connect')));
    try {
      const expected = clients.map((client) => client.localPort).sort();
      expect(localPortsTo(process.pid, port).sort()).toEqual(expected);
      // The server's side of the same connections is to other ports, and a port nobody uses has none.
      expect(localPortsTo(process.pid, expected[0] ?? 0)).toEqual([port]);
      expect(localPortsTo(process.pid, 1)).toEqual([]);
      expect(localPortsTo(2 ** 22 + 1, port)).toEqual([]);
    } finally {
      for (const client of clients) client.destroy();
    }
  });
});

describe('pidsListeningOn', () => {
  it('picks, of the processes of a name, the one listening on the port', async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      const comm = readFileSync(`/proc/${process.pid}/comm`, 'utf8').trim();
      // This process listens on the port; the other processes of its name (vitest's workers) do not.
      expect(pidsByName(comm)).toContain(process.pid);
      expect(pidsListeningOn(comm, port)).toEqual([process.pid]);
      // With no listener to tell them apart, every process of the name, as before. Processes of
      // the name start and end meanwhile (the services other test files run are `node` too): every
      // one there before and after is in the answer, and nothing that was there at neither.
      const before = pidsByName(comm);
      const all = pidsListeningOn(comm, 1);
      const after = pidsByName(comm);
      for (const pid of before.filter((pid) => after.includes(pid))) expect(all).toContain(pid);
      for (const pid of all) expect([...before, ...after]).toContain(pid);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('the machine and the scheduler', () => {
  it("reads the cores' idle and stolen ticks from /proc/stat, and how many cores there are", () => {
    const stat = 'cpu  100 5 30 800 10 2 3 7 0 0\ncpu0 50 2 15 400 5 1 1 3 0 0\ncpu1 50 3 15 400 5 1 2 4 0 0\nintr 1\n';
    expect(parseMachineTicks(stat, 42)).toEqual({ idle: 810, steal: 7, cores: 2, at: 42 });
    expect(parseMachineTicks('intr 1\n', 0)).toBeUndefined();
    expect(machineTicks()?.cores).toBeGreaterThan(0);
  });

  it('gives the busy and stolen shares of the time that passed, whatever ticks were sampled', () => {
    // 10 s on 2 cores: 2,000 ticks of time, of which 600 idle and 20 stolen.
    const start = { idle: 1_000, steal: 5, cores: 2, at: 5_000 };
    expect(busyBetween(start, { idle: 1_600, steal: 25, cores: 2, at: 15_000 })).toEqual({ busy: 0.7, steal: 0.01 });
    expect(busyBetween(start, { idle: 1_000, steal: 5, cores: 2, at: 5_000 })).toBeUndefined();
  });

  // A lower bound only: other test files may keep the other core busy meanwhile.
  it('sees one core kept busy as at least its share of the machine', async () => {
    const start = machineTicks();
    const until = performance.now() + 300;
    while (performance.now() < until) {
      // spin: this thread keeps one core busy
    }
    const end = machineTicks();
    if (!start || !end) throw new Error('no /proc/stat');
    const shares = busyBetween(start, end);
    expect(shares?.busy).toBeGreaterThanOrEqual(1 / end.cores - 0.15);
  });

  it("sums a process's threads' time on a CPU and waiting for one, and grows with work done", () => {
    const before = procSchedSeconds(process.pid);
    expect(before).toBeDefined();
    // Work until the kernel has counted 50 ms of this process's CPU (however busy the machine is).
    const cpuBefore = process.cpuUsage();
    let used = 0;
    while (used < 50_000) {
      const { user, system } = process.cpuUsage(cpuBefore);
      used = user + system;
    }
    const after = procSchedSeconds(process.pid);
    expect((after?.run ?? 0) - (before?.run ?? 0)).toBeGreaterThan((0.8 * used) / 1e6);
    expect(after?.wait ?? -1).toBeGreaterThanOrEqual(before?.wait ?? 0);
    expect(procSchedSeconds(2 ** 22 + 1)).toBeUndefined();
  });
});
