import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Ports are drawn from below the kernel's ephemeral range (32768–60999 by default on Linux). A
 * port the kernel hands out for `listen(0)` comes from that range, and so does the local port of
 * every outgoing connection: a client connecting to NATS or PostgreSQL in the gap between this
 * check and the service's own `listen` could take it. Below the range only another listener can.
 */
const FIRST = 20_000;
const LAST = Math.max(FIRST + 1_000, ephemeralRangeStart() - 1);
const ATTEMPTS = 100;

function ephemeralRangeStart(): number {
  try {
    const [start] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    return Number(start) || 32_768;
  } catch {
    return 32_768;
  }
}

/** A TCP port free on 127.0.0.1 right now, below the ephemeral range where it can. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = FIRST + Math.floor(Math.random() * (LAST - FIRST + 1));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port on 127.0.0.1 between ${FIRST} and ${LAST} after ${ATTEMPTS} tries`);
}

/** A port held by a listener on 127.0.0.1, for what a service does when its port is taken. */
export async function holdPort(): Promise<{ port: number; release(): Promise<void> }> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1' }, () => resolve());
  });
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('the holding listener has no port');
  return { port: address.port, release: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** Whether a listener could take `port` on 127.0.0.1 now: nothing holds it. */
export function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}
