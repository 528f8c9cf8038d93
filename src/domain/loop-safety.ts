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
  /** Automatic mails this channel sent to the recipient within the last hour. */
  sentLastHour: number;
  limitPerHour: number;
}

/** Why no automatic mail may go to this recipient, or null when it may. */
export function automaticMailBlock({ recipient, channelAddress, sentLastHour, limitPerHour }: AutomaticMailCheck): string | null {
  // A3: a visitor is mailed only once their address is known.
  if (recipient === null) return "the contact's email address is not known yet";
  if (isChannelAddress(recipient, channelAddress)) return 'the recipient is the channel itself';
  const localPart = recipient.slice(0, recipient.lastIndexOf('@'));
  if (NO_REPLY_LOCAL_PART.test(localPart)) return 'the recipient is a no-reply address';
  if (sentLastHour >= limitPerHour)
    return `the recipient had ${sentLastHour} automatic mails in the last hour (limit ${limitPerHour})`;
  return null;
}
