// A channel's forwarding address, `username@subdomain.<INBOUND_DOMAIN>`: mail servers forward to it, and the
// SMTP receiver (the inbound domain's MX) takes mail for it. It is as much the channel's own as its address.

interface ForwardingColumns {
  forwarding_username: string | null;
  forwarding_subdomain: string | null;
}

/** `username@subdomain.<inbound domain>`, or null while the channel has none. */
export function forwardingAddressOf(channel: ForwardingColumns, inboundDomain: string): string | null {
  if (!channel.forwarding_username || !channel.forwarding_subdomain) return null;
  return `${channel.forwarding_username}@${channel.forwarding_subdomain}.${inboundDomain}`;
}

/** Every address that is the channel itself: its address and, when it has one, its forwarding address. */
export function ownAddressesOf(channel: ForwardingColumns & { email_address: string }, inboundDomain?: string): string[] {
  const forwarding = inboundDomain ? forwardingAddressOf(channel, inboundDomain) : null;
  return forwarding ? [channel.email_address, forwarding] : [channel.email_address];
}

/**
 * A recipient at the inbound domain as its forwarding-address parts (lower case): `support+tag@acme.<inbound
 * domain>` is username `support`, subdomain `acme`, tag `tag`. Undefined for an address elsewhere.
 */
export function forwardingAddressParts(
  address: string,
  inboundDomain: string,
): { username: string; subdomain: string; tag: string | null } | undefined {
  const lower = address.toLowerCase();
  const at = lower.lastIndexOf('@');
  if (at <= 0) return undefined;
  const domain = lower.slice(at + 1);
  const suffix = `.${inboundDomain.toLowerCase()}`;
  if (!domain.endsWith(suffix) || domain.length === suffix.length) return undefined;
  const local = lower.slice(0, at);
  const plus = local.indexOf('+');
  return {
    username: plus === -1 ? local : local.slice(0, plus),
    subdomain: domain.slice(0, -suffix.length),
    tag: plus === -1 ? null : local.slice(plus + 1),
  };
}
