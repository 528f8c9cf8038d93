import type { SenderVerdictKind } from './sender-verdict.js';
import { isChannelAddress } from './threading.js';

// Mail loops start when an automatic mail answers an automatic mail. These rules decide whether
// Mailroom may send one of its own (greeting, survey) to a recipient at all.

// Local parts that no person reads: answering them only feeds a robot.
const NO_REPLY_LOCAL_PART =
  /^(no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]?daemon|postmaster|bounces?|notifications?)([-+_.].*)?$/i;

export interface AutomaticMailCheck {
  /** Null while the contact's address is unknown. */
  recipient: string | null;
  channelAddress: string;
  /** The channel's forwarding address, when it has one: as much the channel's own as its address. */
  forwardingAddress?: string | null;
  /** Automatic mails this channel sent to the recipient within the last hour. */
  sentLastHour: number;
  limitPerHour: number;
  /** Flood limits: automatic mails within the last hour to the recipient's domain, and from the channel to anyone. */
  sentToDomainLastHour?: number;
  limitPerDomainPerHour?: number;
  sentByChannelLastHour?: number;
  limitPerChannelPerHour?: number;
  /** The customer's latest mail: what the receiving server said about its sender, and whether an import brought it. */
  latestMail?: { senderVerdict: SenderVerdictKind | null; senderReasons: readonly string[]; imported: boolean } | null;
  /** An agent released the conversation from spam: they vouch for the sender. */
  releasedFromSpam?: boolean;
}

/** Why no automatic mail may go to this recipient, or null when it may. */
export function automaticMailBlock(check: AutomaticMailCheck): string | null {
  const { recipient, channelAddress, sentLastHour, limitPerHour, latestMail } = check;
  // A3: a visitor is mailed only once their address is known.
  if (recipient === null) return "the contact's email address is not known yet";
  const own = check.forwardingAddress ? [channelAddress, check.forwardingAddress] : [channelAddress];
  if (isChannelAddress(recipient, own)) return 'the recipient is the channel itself';
  const localPart = recipient.slice(0, recipient.lastIndexOf('@'));
  if (NO_REPLY_LOCAL_PART.test(localPart)) return 'the recipient is a no-reply address';
  // Answering a forged sender is backscatter: the mail would go to whoever was impersonated.
  if (latestMail?.senderVerdict && latestMail.senderVerdict !== 'ordinary' && !check.releasedFromSpam) {
    const why = latestMail.senderReasons[0] ?? 'the receiving server flagged it';
    return latestMail.senderVerdict === 'spam' ? `the mail is spam: ${why}` : `the sender could not be verified: ${why}`;
  }
  if (latestMail?.imported) return 'the mail was imported from the mailbox’s history';
  if (sentLastHour >= limitPerHour)
    return `the recipient had ${sentLastHour} automatic mails in the last hour (limit ${limitPerHour})`;
  const domain = recipient.slice(recipient.lastIndexOf('@') + 1);
  if (check.limitPerDomainPerHour !== undefined && (check.sentToDomainLastHour ?? 0) >= check.limitPerDomainPerHour) {
    return `${domain} had ${check.sentToDomainLastHour} automatic mails from this channel in the last hour (limit ${check.limitPerDomainPerHour})`;
  }
  if (check.limitPerChannelPerHour !== undefined && (check.sentByChannelLastHour ?? 0) >= check.limitPerChannelPerHour) {
    return `the channel sent ${check.sentByChannelLastHour} automatic mails in the last hour (limit ${check.limitPerChannelPerHour})`;
  }
  return null;
}

/** Why automatic mail was held back, as a code from a fixed set (metrics' labels): read from the reason's words above. */
export function suppressionReasonCode(reason: string): string {
  for (const [start, code] of SUPPRESSION_CODES) if (reason.startsWith(start)) return code;
  // "<domain> had N automatic mails from this channel in the last hour"
  if (reason.includes(' automatic mails from this channel in the last hour')) return 'domain_limit';
  return 'other';
}

const SUPPRESSION_CODES: readonly (readonly [string, string])[] = [
  ["the contact's email address is not known", 'address_unknown'],
  ['the recipient is the channel itself', 'own_address'],
  ['the recipient is a no-reply address', 'no_reply_address'],
  ['the mail is spam', 'spam'],
  ['the sender could not be verified', 'unverified_sender'],
  ['the mail was imported', 'imported'],
  ['the recipient had ', 'recipient_limit'],
  ['the channel sent ', 'channel_limit'],
  ['the contact unsubscribed', 'unsubscribed'],
];
