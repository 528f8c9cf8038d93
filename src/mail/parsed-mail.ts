import type { MailClassification } from '../domain/conversation.js';
import type { SenderVerdict } from '../domain/sender-verdict.js';

// What Mailroom keeps of a parsed mail. Crosses the worker-thread boundary, so plain data only.

export interface MailAddress {
  /** Lower-cased. */
  address: string;
  name: string | null;
}

export interface ParsedAttachment {
  /** Never empty: a name is made up from the content type when the mail gives none. */
  filename: string;
  contentType: string;
  size: number;
  /** Without angle brackets, as `cid:` links name it. */
  contentId: string | null;
  /** Shown in the body (a `cid:` image) rather than offered as a file. */
  inline: boolean;
  sha256: string;
  content: Uint8Array;
}

export interface ParsedMail {
  messageId: string;
  from: MailAddress;
  to: MailAddress[];
  cc: MailAddress[];
  subject: string;
  /** The whole text, derived from the HTML when the mail has none. */
  text: string | null;
  /** What the sender wrote this time, without the quoted history. */
  replyText: string | null;
  /** Sanitized: safe to show. */
  html: string | null;
  inReplyTo: string | undefined;
  references: string[];
  date: Date | null;
  classification: MailClassification;
  /** Forged or spam, as the receiving server the channel trusts said (never answered automatically). */
  senderVerdict: SenderVerdict;
  /** For a bounce: the Message-IDs of the mail that could not be delivered. */
  returnedMessageIds: string[];
  attachments: ParsedAttachment[];
}

/** A raw message that cannot become a conversation, with the reason an operator reads. */
export class UnparseableMailError extends Error {
  override name = 'UnparseableMailError';
}

export const NOT_MIME = 'not an RFC 822 message: it does not start with a header section';
