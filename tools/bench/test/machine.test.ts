import { describe, expect, it } from 'vitest';
import { type CpuSnapshot, cpuFigures, machineFigures } from '../src/load.js';
import { machineSummary } from '../src/report.js';

type Sched = Record<string, Record<number, { run: number; wait: number }>>;

function snapshot(machine: CpuSnapshot['machine'], sched: Sched, infra: Record<string, Record<number, number>> = {}): CpuSnapshot {
  const byPid = <T>(readings: Record<string, Record<number, T>>) =>
    new Map(
      Object.entries(readings).map(([name, pids]) => [name, new Map(Object.entries(pids).map(([pid, value]) => [Number(pid), value]))]),
    );
  return { byProcess: new Map(), scrapes: new Map(), infra: byPid(infra), syscalls: new Map(), machine, sched: byPid(sched) };
}

describe('the machine in the window', () => {
  it('gives the busy and stolen shares of the window, and each process its wait for a CPU per second it ran', () => {
    const before = snapshot(
      { idle: 1_000, steal: 10, cores: 2, at: 0 },
      { 'gateway-0': { 7: { run: 10, wait: 4 } }, nats: { 9: { run: 3, wait: 1 } } },
    );
    // 2 s on 2 cores, 400 ticks: 60 idle, 4 stolen. gateway-0 ran 2 s and waited 2.5 s; nats ran 1 s and waited 0.25 s.
    const after = snapshot(
      { idle: 1_060, steal: 14, cores: 2, at: 2_000 },
      { 'gateway-0': { 7: { run: 12, wait: 6.5 } }, nats: { 9: { run: 4, wait: 1.25 } }, generator: { 3: { run: 1, wait: 1 } } },
    );
    const figures = machineFigures(before, after);
    expect(figures).toEqual({ busy: 0.85, steal: 0.01, waitPerRunSecond: { 'gateway-0': 1.25, nats: 0.25 } });
    expect(machineSummary(figures)).toBe(
      '85% of the cores busy (steal 1.0%); seconds each process waited for a CPU per second it ran: gateway-0 1.25, nats 0.25',
    );
  });

  it('takes nothing off for a process that ended in the window, and counts one that started in it whole', () => {
    // PostgreSQL backend 21 ended during the window (its pool closed it) and 23 started.
    const before = snapshot(
      undefined,
      { postgres: { 20: { run: 5, wait: 1 }, 21: { run: 9, wait: 30 } } },
      { postgres: { 20: 5, 21: 9 }, nats: { 9: 2 } },
    );
    const after = snapshot(
      undefined,
      { postgres: { 20: { run: 7, wait: 1.5 }, 23: { run: 1, wait: 1 } } },
      { postgres: { 20: 7, 23: 1 }, nats: { 9: 3.5 } },
    );
    // 20 ran 2 s and waited 0.5; 23 ran 1 s and waited 1.
    expect(machineFigures(before, after).waitPerRunSecond).toEqual({ postgres: 0.5 });
    const cpu = cpuFigures(before, after, 1_000);
    expect(cpu.infraByName).toEqual({ postgres: 3, nats: 1.5 });
    expect(cpu.infraSeconds).toBe(4.5);
  });

  it('leaves the CPU with the infrastructure unknown when a name was read at one end of the window only', () => {
    const withServices = (snap: CpuSnapshot, seconds: number) => ({ ...snap, byProcess: new Map([['gateway-0', seconds]]) });
    const before = withServices(snapshot(undefined, {}, { nats: { 9: 2 } }), 10);
    // PostgreSQL's backends could not be listed at the start (its query failed), only at the end.
    const after = withServices(snapshot(undefined, {}, { nats: { 9: 3 }, postgres: { 20: 4 } }), 12);
    const cpu = cpuFigures(before, after, 1_000);
    expect(cpu.perDeliveryUs).toBe(2_000);
    // Before: 3,000 µs, NATS alone taken for all of it.
    expect(cpu.perDeliveryAllUs).toBeUndefined();
    const whole = cpuFigures(before, withServices(snapshot(undefined, {}, { nats: { 9: 3 } }), 12), 1_000);
    expect(whole.perDeliveryAllUs).toBe(3_000);
  });

  it('leaves the CPU with the infrastructure unknown when a name the system uses was read at neither end', () => {
    const withServices = (snap: CpuSnapshot, seconds: number) => ({
      ...snap,
      byProcess: new Map([['gateway-0', seconds]]),
      infraNames: new Set(['nats', 'postgres']),
    });
    // No PostgreSQL backend found at either end (a PostgreSQL in a container, say).
    const cpu = cpuFigures(
      withServices(snapshot(undefined, {}, { nats: { 9: 2 } }), 10),
      withServices(snapshot(undefined, {}, { nats: { 9: 3 } }), 12),
      1_000,
    );
    expect(cpu.perDeliveryUs).toBe(2_000);
    // Before: 3,000 µs, as if NATS were all the infrastructure it used.
    expect(cpu.perDeliveryAllUs).toBeUndefined();
    expect(cpu.usesInfrastructure).toBe(true);
  });

  it('says nothing where /proc did not tell', () => {
    const figures = machineFigures(snapshot(undefined, {}), snapshot(undefined, {}));
    expect(figures).toEqual({ busy: undefined, steal: undefined, waitPerRunSecond: {} });
    expect(machineSummary(figures)).toBeUndefined();
  });
});
