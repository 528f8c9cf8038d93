import { isChannelAddress } from './threading.js';

// Who may have written a mail in a channel's Sent folder on the team's behalf: the channel's own address.

/** The addresses a channel's mail is sent from: its address (also with a `+tag`) and its mailbox's login when that is an address. */
export function isSendingIdentity(address: string, channel: { emailAddress: string; imapUsername: string | null }): boolean {
  if (isChannelAddress(address, channel.emailAddress)) return true;
  const login = channel.imapUsername?.toLowerCase();
  return login !== undefined && login.includes('@') && address.toLowerCase() === login;
}
