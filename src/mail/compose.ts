import type Mail from 'nodemailer/lib/mailer/index.js';
import type { OutboundKind } from '../domain/conversation.js';
import { isSingleMailbox } from '../domain/addresses.js';
import { signedParts, type Signature } from './signature.js';
import { textToHtml } from './text-html.js';

export interface OutgoingMail {
  kind: OutboundKind;
  messageId: string;
  from: { name: string; address: string };
  to: string;
  subject: string;
  text: string;
  inReplyTo: string | null;
  references: readonly string[];
  replyTo: string | null;
  /** Below the body, in the text and the HTML part (src/mail/signature.ts). */
  signature?: Signature | null;
  /** Survey mail: one-click unsubscribe (List-Unsubscribe with List-Unsubscribe-Post, RFC 8058). */
  listUnsubscribe?: string | null;
  /** Who else gets it: Cc in the header and the envelope, Bcc in the envelope only. */
  cc?: readonly string[];
  bcc?: readonly string[];
  /** Sanitized HTML typed by an agent; else the HTML is made from the text. */
  html?: string | null;
  attachments?: readonly OutgoingAttachment[];
}

export interface OutgoingAttachment {
  filename: string;
  contentType: string;
  content: Buffer;
}

// Mail we send on our own (not typed by a person, the AI agent's included): RFC 3834 marks it so that
// auto-responders stay silent.
const AUTOMATIC_KINDS: ReadonlySet<OutboundKind> = new Set(['greeting', 'csat_survey', 'out_of_office', 'ai_reply', 'handover']);

/** Outgoing mail goes to exactly one mailbox: never a list, whatever a header or a contact row holds. */
export class InvalidRecipientError extends Error {
  override name = 'InvalidRecipientError';
}

function headersOf(mail: OutgoingMail): Record<string, string> | undefined {
  const headers: Record<string, string> = {};
  if (AUTOMATIC_KINDS.has(mail.kind)) headers['Auto-Submitted'] = 'auto-replied';
  if (mail.listUnsubscribe) {
    headers['List-Unsubscribe'] = `<${mail.listUnsubscribe}>`;
    headers['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click';
  }
  return Object.keys(headers).length > 0 ? headers : undefined;
}

/** The exact message handed to SMTP: the preview and the send use this one function. */
export function composeMail(mail: OutgoingMail): Mail.Options {
  if (!isSingleMailbox(mail.to))
    throw new InvalidRecipientError(`not a single mailbox: ${JSON.stringify(mail.to.slice(0, 300))}`);
  const cc = [...(mail.cc ?? [])];
  const bcc = [...(mail.bcc ?? [])];
  for (const address of [...cc, ...bcc]) {
    if (!isSingleMailbox(address))
      throw new InvalidRecipientError(`not a single mailbox: ${JSON.stringify(address.slice(0, 300))}`);
  }
  return {
    // Set explicitly, so SMTP's RCPT TO is this one address and nothing nodemailer might read out of the headers.
    // Bcc is named here and nowhere in the headers.
    envelope: { from: mail.from.address, to: [mail.to, ...cc, ...bcc] },
    messageId: mail.messageId,
    from: { name: mail.from.name, address: mail.from.address },
    to: mail.to,
    cc: cc.length > 0 ? cc : undefined,
    subject: mail.subject,
    ...signedParts({ text: mail.text, html: mail.html ?? textToHtml(mail.text) }, mail.signature ?? null),
    replyTo: mail.replyTo ?? undefined,
    inReplyTo: mail.inReplyTo ?? undefined,
    references: mail.references.length > 0 ? [...mail.references] : undefined,
    headers: headersOf(mail),
    attachments: mail.attachments?.map(({ filename, contentType, content }) => ({ filename, contentType, content })),
  };
}
