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
