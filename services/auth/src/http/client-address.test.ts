import { describe, expect, it } from 'vitest';
import { clientAddressKey, requestAddressKey } from './client-address.js';

describe('clientAddressKey', () => {
  it('keeps an IPv4 address, also one written as IPv4-mapped IPv6', () => {
    expect(clientAddressKey('10.1.2.3')).toBe('10.1.2.3');
    expect(clientAddressKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(clientAddressKey('::FFFF:192.168.0.1')).toBe('192.168.0.1');
  });

  it('takes an IPv4 address inside an IPv6 one however it is written, behind NAT64 too', () => {
    // Before, these were counted by their /64: all IPv4 clients under one key.
    for (const address of ['0:0:0:0:0:ffff:1.2.3.4', '::ffff:102:304', '::ffff:0102:0304', '64:ff9b::1.2.3.4', '64:ff9b::102:304'])
      expect(clientAddressKey(address), address).toBe('1.2.3.4');
    expect(clientAddressKey('64:ff9b::203.0.113.200')).toBe('203.0.113.200');
    // Not the /96 prefixes: counted by their /64 as any IPv6 address.
    expect(clientAddressKey('64:ff9b:1::1.2.3.4')).toBe('64:ff9b:1:0::/64');
    expect(clientAddressKey('::1:ffff:1.2.3.4')).toBe('0:0:0:0::/64');
  });

  it('counts every address of one IPv6 /64 as one, however it is written', () => {
    const key = '2001:db8:1:2::/64';
    for (const address of [
      '2001:db8:1:2::1',
      '2001:db8:1:2:ffff:ffff:ffff:ffff',
      '2001:0DB8:0001:0002:0:0:0:7',
      '2001:db8:1:2::',
      '2001:db8:1:2::9%eth0',
    ]) {
      expect(clientAddressKey(address), address).toBe(key);
    }
    expect(clientAddressKey('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64');
    expect(clientAddressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(clientAddressKey('::1')).toBe('0:0:0:0::/64');
  });

  it('leaves anything else as it is', () => {
    expect(clientAddressKey('unknown')).toBe('unknown');
    expect(clientAddressKey('')).toBe('');
  });
});

describe('requestAddressKey', () => {
  it('counts a reported address without the port some proxies write after it', () => {
    // Before, each new port was a key of its own: a fresh allowance of logins and sign-ups per TCP connection.
    expect(requestAddressKey('203.0.113.7:51234', '127.0.0.1')).toBe('203.0.113.7');
    expect(requestAddressKey('203.0.113.7:51235', '127.0.0.1')).toBe('203.0.113.7');
    expect(requestAddressKey('[2001:db8:1:2::9]:443', '127.0.0.1')).toBe('2001:db8:1:2::/64');
    expect(requestAddressKey('[2001:db8:1:2::9]', '127.0.0.1')).toBe('2001:db8:1:2::/64');
  });

  it('keeps an address without a port as clientAddressKey does', () => {
    expect(requestAddressKey('10.1.2.3', '127.0.0.1')).toBe('10.1.2.3');
    expect(requestAddressKey('::ffff:10.1.2.3', undefined)).toBe('10.1.2.3');
    expect(requestAddressKey('2001:db8:1:2::1', '127.0.0.1')).toBe('2001:db8:1:2::/64');
    expect(requestAddressKey('fe80::1%eth0', '127.0.0.1')).toBe('fe80:0:0:0::/64');
  });

  it('falls back to the connection peer for an entry that is no address', () => {
    // Before, any string a client got written there was a key of its own.
    expect(requestAddressKey('unknown', '10.0.0.5')).toBe('10.0.0.5');
    expect(requestAddressKey('attacker-chosen-1', '::ffff:10.0.0.5')).toBe('10.0.0.5');
    expect(requestAddressKey('', '10.0.0.5')).toBe('10.0.0.5');
    expect(requestAddressKey('unknown', undefined)).toBe('unknown');
  });

  it('takes a request whose client has gone, and with it any address, under one key', () => {
    // Before: a TypeError, answered 500 and logged as an error.
    expect(requestAddressKey(undefined, undefined)).toBe('unknown');
    expect(requestAddressKey(undefined, '::ffff:10.0.0.5')).toBe('10.0.0.5');
  });
});
