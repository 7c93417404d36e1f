import { isIP, isIPv6 } from 'node:net';

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
 * IPv6 prefixes (/96) whose last 32 bits are a client's IPv4 address: IPv4-mapped addresses
 * (`::ffff:0:0/96`, how a dual-stack socket reports an IPv4 peer) and the well-known NAT64 prefix
 * (`64:ff9b::/96`, how IPv4 clients reach an IPv6-only cluster through NAT64 or SIIT-DC). Counted
 * by their /64, every IPv4 client behind a NAT64 shared one key: 50 bad logins from anyone
 * refused the logins of all.
 */
const IPV4_EMBEDDING_PREFIXES = [
  [0, 0, 0, 0, 0, 0xffff],
  [0x64, 0xff9b, 0, 0, 0, 0],
];

/** The eight 16-bit groups of an IPv6 address (no zone), a dotted IPv4 tail included. */
function ipv6Groups(address: string): number[] {
  const [head = '', tail] = address.split('::');
  const groups = (part: string) =>
    part === ''
      ? []
      : part.split(':').flatMap((group) => {
          if (!group.includes('.')) return [Number.parseInt(group, 16)];
          const [a = 0, b = 0, c = 0, d = 0] = group.split('.').map(Number);
          return [a * 256 + b, c * 256 + d];
        });
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  return [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back];
}

/**
 * The key the throttles count a client address under: an IPv4 address as it is (also when written
 * inside an IPv6 one, however it is written: see IPV4_EMBEDDING_PREFIXES), and an IPv6 address by
 * its /64. A single IPv6 line is usually given a /64 or more, so counting each address on its own
 * would let one client take a fresh allowance with every request.
 */
export function clientAddressKey(address: string): string {
  const plain = address.replace(/%.*$/, '');
  if (!isIPv6(plain)) return address;
  const groups = ipv6Groups(plain);
  if (IPV4_EMBEDDING_PREFIXES.some((prefix) => prefix.every((group, i) => groups[i] === group))) {
    const [high = 0, low = 0] = groups.slice(6);
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
  }
  return `${groups
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`;
}
