import { isIP, isIPv6 } from 'node:net';

const IPV4_MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;
/** `a.b.c.d:port` or `[v6]:port` (or `[v6]`), as some proxies write `X-Forwarded-For`. */
const WITH_PORT = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):\d+|\[([^\]]+)\](?::\d+)?)$/;
/** The key of requests whose client address is gone (the client reset its connection). */
const UNKNOWN_ADDRESS = 'unknown';

/**
 * The address the throttles count a request under: the client address the proxies in front
 * reported (`request.ip`), without a port some write after it. An entry that is no address at all
 * (`unknown`, a name) falls back to the connection's own peer: taken as it is, it let every request
 * with a fresh port, or a fresh string, start its own count, and put every client reported as
 * `unknown` under one.
 */
export function requestAddressKey(reported: string | undefined, peer: string | undefined): string {
  // Node forgets a socket's address once it is closed: a client that reset its connection after
  // sending its request has none, and reading it threw (a 500, and an error in the log).
  if (reported === undefined) return peer === undefined ? UNKNOWN_ADDRESS : clientAddressKey(peer);
  const match = WITH_PORT.exec(reported);
  const address = match ? (match[1] ?? match[2] ?? reported) : reported;
  if (isIP(address.replace(/%.*$/, '')) !== 0) return clientAddressKey(address);
  return clientAddressKey(peer ?? address);
}

/**
 * The key the throttles count a client address under: an IPv4 address as it is (also when written
 * as an IPv4-mapped IPv6 address), and an IPv6 address by its /64. A single IPv6 line is usually
 * given a /64 or more, so counting each address on its own would let one client take a fresh
 * allowance with every request.
 */
export function clientAddressKey(address: string): string {
  const mapped = IPV4_MAPPED.exec(address);
  if (mapped?.[1]) return mapped[1];
  const plain = address.replace(/%.*$/, '');
  if (!isIPv6(plain)) return address;
  const [head = '', tail] = plain.split('::');
  const groups = (part: string) => (part === '' ? [] : part.split(':').flatMap((group) => (group.includes('.') ? ['0', '0'] : [group])));
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  const full = [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back];
  return `${full
    .slice(0, 4)
    .map((group) => Number.parseInt(group, 16).toString(16))
    .join(':')}::/64`;
}
