import { describe, expect, it } from 'vitest';
import { LOOPBACK_NETWORKS } from '../../src/config.js';
import {
  DestinationRefusedError,
  DestinationUnresolvedError,
  isSameMailServerLogin,
  refusedRange,
  resolveDestination,
} from '../../src/security/destinations.js';

describe('the destination policy for admin-configured mail servers', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.254', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'linkLocal'],
    ['100.64.0.1', 'carrierGradeNat'],
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.10', 'reserved'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'linkLocal'],
    ['fe80::1%eth0', 'linkLocal'],
    ['fc00::1', 'uniqueLocal'],
    ['fd12:3456::1', 'uniqueLocal'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:169.254.169.254', 'linkLocal'],
    ['::7f00:1', 'ipv4Compatible'],
    ['64:ff9b::a00:1', 'rfc6052'],
    ['2002:7f00:1::', '6to4'],
    ['2001:db8::1', 'reserved'],
  ])('refuses %s (%s)', (address, range) => {
    expect(refusedRange(address, [])).toBe(range);
  });

  it.each(['93.184.215.14', '8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8'])(
    'allows the public address %s',
    (address) => {
      expect(refusedRange(address, [])).toBeUndefined();
    },
  );

  it("lets addresses inside the operator's allowed ranges through, and only those", () => {
    expect(refusedRange('127.0.0.1', LOOPBACK_NETWORKS)).toBeUndefined();
    expect(refusedRange('::1', LOOPBACK_NETWORKS)).toBeUndefined();
    expect(refusedRange('::ffff:127.0.0.1', LOOPBACK_NETWORKS)).toBeUndefined();
    expect(refusedRange('10.20.3.4', ['10.20.0.0/16'])).toBeUndefined();
    expect(refusedRange('10.21.3.4', ['10.20.0.0/16'])).toBe('private');
    expect(refusedRange('0.0.0.0', LOOPBACK_NETWORKS)).toBe('unspecified');
    expect(refusedRange('169.254.169.254', LOOPBACK_NETWORKS)).toBe('linkLocal');
    expect(refusedRange('fd00:20::5', ['fd00:20::/64', '10.0.0.0/8'])).toBeUndefined();
  });

  it('refuses localhost, which resolves to loopback, and says how the operator can allow it', async () => {
    const refused = await resolveDestination('localhost', []).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(DestinationRefusedError);
    expect((refused as DestinationRefusedError).range).toBe('loopback');
    expect((refused as Error).message).toMatch(
      /^localhost resolves to a private address \(loopback\), which is not allowed; .*ALLOWED_PRIVATE_NETWORKS/,
    );
  });

  it('dials the resolved address and verifies TLS against the host name', async () => {
    const destination = await resolveDestination('localhost', LOOPBACK_NETWORKS);
    expect(destination.host).toBe('localhost');
    expect(['127.0.0.1', '::1']).toContain(destination.address);
    expect(destination.servername).toBe('localhost');
  });

  it('takes IP literals as they are, without a server name', async () => {
    expect(await resolveDestination('127.0.0.1', LOOPBACK_NETWORKS)).toEqual({ host: '127.0.0.1', address: '127.0.0.1' });
    expect(await resolveDestination('2606:4700:4700::1111', [])).toEqual({
      host: '2606:4700:4700::1111',
      address: '2606:4700:4700::1111',
    });
    await expect(resolveDestination('::ffff:7f00:1', [])).rejects.toBeInstanceOf(DestinationRefusedError);
    await expect(resolveDestination('10.0.0.1', LOOPBACK_NETWORKS)).rejects.toBeInstanceOf(DestinationRefusedError);
  });

  it('reads a numeric host in a short form as the address it stands for', async () => {
    // getaddrinfo reads "127.1" as 127.0.0.1
    await expect(resolveDestination('127.1', [])).rejects.toBeInstanceOf(DestinationRefusedError);
  });

  it('says when a name does not resolve', async () => {
    await expect(resolveDestination('no-such-host.invalid', [])).rejects.toBeInstanceOf(DestinationUnresolvedError);
  });
});

describe('where a stored mail server password may go', () => {
  const stored = { host: 'imap.acme.example', port: 993, tls: true, username: 'support' };

  it('only to the host, port, TLS mode and user it was saved with', () => {
    expect(isSameMailServerLogin(stored, { ...stored })).toBe(true);
    expect(isSameMailServerLogin(stored, { ...stored, host: 'IMAP.Acme.Example' })).toBe(true);
    expect(isSameMailServerLogin(stored, { ...stored, host: 'imap.evil.example' })).toBe(false);
    expect(isSameMailServerLogin(stored, { ...stored, port: 143 })).toBe(false);
    expect(isSameMailServerLogin(stored, { ...stored, tls: false })).toBe(false);
    expect(isSameMailServerLogin(stored, { ...stored, username: 'other' })).toBe(false);
    expect(isSameMailServerLogin({ host: null, port: null, tls: false, username: null }, { ...stored })).toBe(false);
  });
});
