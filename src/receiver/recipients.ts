import type { Db } from '../db/connection.js';
import type { Channel } from '../db/schema.js';
import { forwardingAddressParts } from '../domain/forwarding-address.js';

// Which channel a recipient of the SMTP receiver is. The forwarding address (with or without a +tag) names its
// channel; on any other domain (one whose MX points here) only a reply-token address is taken, and the token
// names the conversation, hence the channel: a channel's own address alone is not proof of owning that domain.

export type RecipientLookup =
  { kind: 'channel'; channel: Channel } | { kind: 'disabled'; channel: Channel } | { kind: 'unknown' };

const REPLY_TOKEN = /^[0-9a-f]{32}$/;
// RFC 5321 4.5.3.1: a path is at most 256 octets.
const MAX_ADDRESS_LENGTH = 256;

export async function findRecipientChannel(db: Db, address: string, inboundDomain: string): Promise<RecipientLookup> {
  if (address.length > MAX_ADDRESS_LENGTH) return { kind: 'unknown' };
  const forwarding = forwardingAddressParts(address, inboundDomain);
  const channel = forwarding
    ? await db
        .selectFrom('channels')
        .selectAll()
        .where('forwarding_subdomain', '=', forwarding.subdomain)
        .where('forwarding_username', '=', forwarding.username)
        .where('deleted_at', 'is', null)
        .executeTakeFirst()
    : await channelOfReplyTokenAddress(db, address.toLowerCase());
  if (!channel) return { kind: 'unknown' };
  return channel.enabled ? { kind: 'channel', channel } : { kind: 'disabled', channel };
}

/** `support+<token>@acme.example`: the channel whose conversation has that token and whose address is `support@acme.example`. */
async function channelOfReplyTokenAddress(db: Db, address: string): Promise<Channel | undefined> {
  const at = address.lastIndexOf('@');
  const local = address.slice(0, at);
  const plus = local.indexOf('+');
  if (at <= 0 || plus <= 0) return undefined;
  const token = local.slice(plus + 1);
  if (!REPLY_TOKEN.test(token)) return undefined;
  const channelAddress = `${local.slice(0, plus)}${address.slice(at)}`;
  return db
    .selectFrom('channels as ch')
    .innerJoin('conversations as c', 'c.channel_id', 'ch.id')
    .selectAll('ch')
    .where('c.reply_token', '=', token)
    .where((eb) => eb(eb.fn('lower', ['ch.email_address']), '=', channelAddress))
    .where('ch.deleted_at', 'is', null)
    .executeTakeFirst();
}
