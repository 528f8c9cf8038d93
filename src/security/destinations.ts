import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

// Mail servers that admins configure (IMAP, SMTP) are dialled from inside the deployment, so a host
// name must not become a way into it: the name is resolved once here, refused when it points at a
// non-public address the operator has not allowed, and the connection then goes to that very address
// (no second lookup that a short-TTL DNS answer could point elsewhere).

/** Where to connect for a configured host: its checked address, with the name TLS verifies the certificate against. */
export interface Destination {
  /** The host as configured. */
  host: string;
  /** The address to dial, checked against the policy. */
  address: string;
  /** SNI and certificate name: the host name; absent for an IP literal, whose certificate is checked against the address. */
  servername?: string;
}

/** The host resolves to no address the policy allows. */
export class DestinationRefusedError extends Error {
  override name = 'DestinationRefusedError';
  constructor(
    readonly host: string,
    /** The first refused address, for the operator's logs; not for API answers. */
    readonly address: string,
    /** Its range as ipaddr.js names it, e.g. loopback, private, linkLocal. */
    readonly range: string,
  ) {
    super(
      `${host} resolves to a private address (${range}), which is not allowed; ` +
        'the operator can allow it with ALLOWED_PRIVATE_NETWORKS',
    );
  }
}

/** The host name does not resolve: no such name, or DNS did not answer. */
export class DestinationUnresolvedError extends Error {
  override name = 'DestinationUnresolvedError';
  constructor(
    readonly host: string,
    readonly code: string,
  ) {
    super(`${host} does not resolve (${code})`);
  }
}

// getaddrinfo has no timeout of its own; an API request should not wait on a dead resolver for long.
const LOOKUP_TIMEOUT_MS = 10_000;

/**
 * The range that makes address non-public ('loopback', 'private', 'uniqueLocal', ...), or undefined
 * when it may be dialled: a public unicast address, or one inside an allowed CIDR range.
 * IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
 */
export function refusedRange(address: string, allowedPrivateNetworks: readonly string[]): string | undefined {
  const parsed = ipaddr.parse(address);
  const processed = ipaddr.process(address);
  const allowed = allowedPrivateNetworks.map((range) => ipaddr.parseCIDR(range));
  if (allowed.some((range) => matches(processed, range) || matches(parsed, range))) return undefined;
  const range = processed.range();
  if (range !== 'unicast') return range;
  // ::a.b.c.d, deprecated IPv4-compatible form (RFC 4291 2.5.5.1): ipaddr.js calls it unicast, but it names an IPv4 host.
  if (processed.kind() === 'ipv6' && processed.match(ipaddr.parseCIDR('::/96'))) return 'ipv4Compatible';
  return undefined;
}

/** A peer on this machine (IPv4-mapped loopback included); false for anything that is no IP address. */
export function isLoopbackAddress(address: string | undefined): boolean {
  return address !== undefined && ipaddr.isValid(address) && ipaddr.process(address).range() === 'loopback';
}

function matches(address: ipaddr.IPv4 | ipaddr.IPv6, [network, bits]: [ipaddr.IPv4 | ipaddr.IPv6, number]): boolean {
  return address.kind() === network.kind() && address.match(network, bits);
}

/** Every address host stands for: an IP literal as it is, a name through the system resolver (as a connect would). */
async function addressesOf(host: string): Promise<string[]> {
  if (isIP(host)) return [host];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DestinationUnresolvedError(host, 'ETIMEOUT')), LOOKUP_TIMEOUT_MS);
  });
  try {
    const found = await Promise.race([lookup(host, { all: true }), timeout]);
    return found.map((entry) => entry.address);
  } catch (error) {
    if (error instanceof DestinationUnresolvedError) throw error;
    throw new DestinationUnresolvedError(host, (error as NodeJS.ErrnoException).code ?? 'ENOTFOUND');
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves host once and picks the first address the policy allows; connect to `address` and verify
 * TLS against `servername`. Throws DestinationUnresolvedError or DestinationRefusedError.
 */
export async function resolveDestination(host: string, allowedPrivateNetworks: readonly string[]): Promise<Destination> {
  const addresses = await addressesOf(host);
  if (addresses.length === 0) throw new DestinationUnresolvedError(host, 'ENODATA');
  const address = addresses.find((candidate) => refusedRange(candidate, allowedPrivateNetworks) === undefined);
  if (address === undefined) {
    throw new DestinationRefusedError(host, addresses[0]!, refusedRange(addresses[0]!, allowedPrivateNetworks)!);
  }
  return { host, address, ...(isIP(host) ? {} : { servername: host }) };
}

/** A mail server login as stored next to its encrypted password. */
export interface MailServerLogin {
  host: string | null;
  port: number | null;
  tls: boolean;
  username: string | null;
}

/**
 * Whether a stored password may be sent for `requested`: only to the very host, port, TLS mode and
 * user it was saved with, so that whoever edits the settings cannot replay it to a server of their own.
 */
export function isSameMailServerLogin(stored: MailServerLogin, requested: MailServerLogin): boolean {
  return (
    stored.host !== null &&
    stored.host.toLowerCase() === requested.host?.toLowerCase() &&
    stored.port === requested.port &&
    stored.tls === requested.tls &&
    stored.username === requested.username
  );
}
