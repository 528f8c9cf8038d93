// Message-ID handling for threading: which earlier mails an inbound mail answers,
// and which headers an outgoing mail carries so that mail clients thread it.

/** `<id@host>` as written in headers, whitespace removed. */
export function normalizeMessageId(value: string): string {
  const trimmed = value.trim();
  return trimmed.startsWith('<') ? trimmed : `<${trimmed}>`;
}

/** Ids an inbound mail refers to, most relevant first: In-Reply-To, then References newest to oldest. */
export function referencedMessageIds(inReplyTo: string | undefined, references: readonly string[]): string[] {
  const ordered = [...(inReplyTo ? [inReplyTo] : []), ...[...references].reverse()];
  return [...new Set(ordered.map(normalizeMessageId))];
}

// RFC 5322 §3.6.4 lets References be trimmed; keep the thread's root and its most recent ids.
const MAX_REFERENCES = 20;

export interface ThreadMessage {
  messageId: string;
  direction: 'inbound' | 'outbound';
}

/**
 * Threading headers for a mail we send into a conversation: it answers the customer's latest
 * mail and references the whole thread.
 * @param thread every message of the conversation so far, oldest first
 */
export function outboundThreadHeaders(thread: readonly ThreadMessage[]): { inReplyTo?: string; references: string[] } {
  if (thread.length === 0) return { references: [] };
  const ids = thread.map((message) => message.messageId);
  const references = ids.length <= MAX_REFERENCES ? ids : [ids[0]!, ...ids.slice(ids.length - (MAX_REFERENCES - 1))];
  const answered = thread.findLast((message) => message.direction === 'inbound') ?? thread[thread.length - 1]!;
  return { inReplyTo: answered.messageId, references };
}

/** Our own Message-IDs embed the outbox row's random uuid, so nobody can guess one to hijack a thread. */
export function outboundMessageId(outboxId: string, channelAddress: string): string {
  const domain = channelAddress.split('@')[1] ?? 'mailroom.invalid';
  return `<${outboxId}@${domain}>`;
}

/** "Re: " once, whatever the customer's client put there already. */
export function replySubject(subject: string): string {
  const base = subject.trim() || '(no subject)';
  return /^re:/i.test(base) ? base : `Re: ${base}`;
}

// Reply tokens: each conversation has an unguessable token (conversations.reply_token), and our mail
// asks for replies at `local+<token>@domain` of the channel address, so that a reply finds its
// conversation even when the customer's client drops In-Reply-To and References.

/** The format of conversations.reply_token: 32 hex digits. */
const REPLY_TOKEN = /^[0-9a-f]{32}$/;

/** The address our mail in a conversation names as Reply-To: `support@acme.example` → `support+<token>@acme.example`. */
export function replyTokenAddress(channelAddress: string, token: string): string {
  const at = channelAddress.lastIndexOf('@');
  return `${channelAddress.slice(0, at)}+${token}${channelAddress.slice(at)}`;
}

/**
 * The first reply token among the addresses that is addressed to this channel, if any. `channelAddresses`: the
 * channel's address, or all its own (its address and its forwarding address), any of which may carry the token.
 */
export function replyTokenIn(addresses: readonly string[], channelAddresses: string | readonly string[]): string | undefined {
  for (const address of addresses) {
    for (const own of ownList(channelAddresses)) {
      const plus = splitPlusAddress(address, own);
      if (plus && REPLY_TOKEN.test(plus)) return plus;
    }
  }
  return undefined;
}

/** Whether the address is one of the channel's own (its address, its forwarding address), with or without a `+tag`: never a customer. */
export function isChannelAddress(address: string, channelAddresses: string | readonly string[]): boolean {
  return ownList(channelAddresses).some(
    (own) => address.toLowerCase() === own.toLowerCase() || splitPlusAddress(address, own) !== undefined,
  );
}

function ownList(channelAddresses: string | readonly string[]): readonly string[] {
  return typeof channelAddresses === 'string' ? [channelAddresses] : channelAddresses;
}

/** The `tag` of `local+tag@domain` when the rest is the channel address. */
function splitPlusAddress(address: string, channelAddress: string): string | undefined {
  const [local, domain] = splitAddress(address.toLowerCase());
  const [channelLocal, channelDomain] = splitAddress(channelAddress.toLowerCase());
  if (domain !== channelDomain || !local.startsWith(`${channelLocal}+`)) return undefined;
  return local.slice(channelLocal.length + 1);
}

function splitAddress(address: string): [string, string] {
  const at = address.lastIndexOf('@');
  return at === -1 ? [address, ''] : [address.slice(0, at), address.slice(at + 1)];
}

/** How an inbound mail found its conversation; recorded on the timeline. */
export type ThreadVia = 'reply_token' | 'returned_message' | 'reference';

export interface ThreadCandidate {
  conversationId: string;
  via: ThreadVia;
}

/**
 * Picks the conversation an inbound mail belongs to, or none for a new one.
 *
 * Candidates come most specific first: the reply token, a bounce's returned message, then
 * In-Reply-To and References newest to oldest. A bounce joins the first candidate: it is about our
 * own mail, and it always comes from a mail system (the caller offers a bounce only the reply token
 * and Message-IDs of mail we sent, which no forger knows). Any other mail joins the first candidate whose
 * participants include its sender (the contact, or any From, To or Cc address of a mail already on
 * it); so replies from different people to one mail of ours (a campaign, a customer mail forwarded to
 * colleagues) each start their own conversation instead of merging into someone else's.
 */
export function chooseThread(
  candidates: readonly ThreadCandidate[],
  mail: { isBounce: boolean; senderParticipatesIn: ReadonlySet<string> },
): ThreadCandidate | undefined {
  if (mail.isBounce) return candidates[0];
  return candidates.find((candidate) => mail.senderParticipatesIn.has(candidate.conversationId));
}
