import { isSingleMailbox } from './addresses.js';

// Who a reply goes to besides the contact: the people the customer kept in To/Cc of their latest mail (reply-all),
// or exactly whom the agent names. Never our own addresses, never a list taken from a hostile header.

/** Cc and Bcc recipients one reply names at most, each. */
export const MAX_REPLY_CC = 10;
export const MAX_REPLY_BCC = 10;
/** A customer mail that names more people than this in To and Cc is no conversation among people: no default Cc. */
export const MAX_DEFAULT_CC_CANDIDATES = 20;

export interface CustomerRecipients {
  to: readonly string[];
  cc: readonly string[];
}

/**
 * The default Cc of a reply: the customer's To and Cc, single mailboxes only, without the contact and without any
 * address `isOwn` claims (the channel's, its +tags, its forwarding address, any channel's of this deployment).
 * Empty when the mail named more people than a person keeps in copy.
 */
export function defaultCc(
  latest: CustomerRecipients | undefined,
  contactEmail: string,
  isOwn: (address: string) => boolean,
): string[] {
  if (!latest) return [];
  const named = [...latest.to, ...latest.cc];
  if (named.length > MAX_DEFAULT_CC_CANDIDATES) return [];
  const contact = contactEmail.toLowerCase();
  const kept = new Set<string>();
  for (const address of named) {
    const lower = address.toLowerCase();
    if (lower === contact || !isSingleMailbox(lower) || isOwn(lower)) continue;
    kept.add(lower);
  }
  return [...kept].slice(0, MAX_REPLY_CC);
}

export type RecipientProblem = { field: 'to' | 'cc' | 'bcc'; message: string };

/**
 * The Cc and Bcc an agent typed, lower-cased and each once (the contact and Cc'd people are not repeated in Bcc);
 * problems name each address that cannot be a recipient.
 */
export function chosenRecipients(
  input: { cc: readonly string[]; bcc: readonly string[] },
  contactEmail: string,
  isOwn: (address: string) => boolean,
): { cc: string[]; bcc: string[]; problems: RecipientProblem[] } {
  const problems: RecipientProblem[] = [];
  const taken = new Set([contactEmail.toLowerCase()]);
  const pick = (field: 'cc' | 'bcc', addresses: readonly string[], max: number) => {
    if (addresses.length > max) {
      problems.push({ field, message: `a reply names at most ${max} ${field === 'cc' ? 'Cc' : 'Bcc'} recipients` });
      return [];
    }
    const kept: string[] = [];
    for (const address of addresses) {
      const lower = address.trim().toLowerCase();
      if (!isSingleMailbox(lower)) {
        problems.push({ field, message: `${JSON.stringify(address.slice(0, 300))} is not a single mailbox (local@domain)` });
      } else if (isOwn(lower)) {
        problems.push({ field, message: `${lower} is an address of a channel, not a person` });
      } else if (!taken.has(lower)) {
        taken.add(lower);
        kept.push(lower);
      }
    }
    return kept;
  };
  const cc = pick('cc', input.cc, MAX_REPLY_CC);
  const bcc = pick('bcc', input.bcc, MAX_REPLY_BCC);
  return { cc, bcc, problems };
}
