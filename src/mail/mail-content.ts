import { createHash } from 'node:crypto';
import type { AddressObject, EmailAddress, HeaderValue } from 'mailparser';
import { isSingleMailbox } from '../domain/addresses.js';
import { classifyMail, type MailHeaders } from '../domain/classification.js';
import { NO_SENDER_TRUST, senderVerdict, type SenderTrust } from '../domain/sender-verdict.js';
import { asParsableMail, messageIdIn, messageIdsIn, readHeaderSection } from './header-section.js';
import { htmlToPlainText } from './html-text.js';
import { parseMime, type MimeAttachment, type MimeContent } from './mime-parser.js';
import { NOT_MIME, UnparseableMailError, type MailAddress, type ParsedAttachment, type ParsedMail } from './parsed-mail.js';
import { replyPart } from './quoted-reply.js';
import { returnedMessageIds } from './returned-message.js';
import { sanitizeMailHtml } from './sanitize-mail-html.js';

// Caps that keep one odd mail from taking the parser's memory and time, or a row's worth of text.
export const MAX_PARSE_BYTES = 64 * 1024 * 1024;
const MAX_TEXT_CHARS = 1_000_000;
const MAX_SUBJECT_CHARS = 1000;
// In-Reply-To plus the newest References: enough to find a thread, bounded for the query.
const MAX_REFERENCES = 100;
const MAX_FILENAME_CHARS = 255;

/** Everything Mailroom keeps of a raw mail; CPU-bound, so it runs on a parser thread (parser-pool.ts). */
export async function extractMailContent(
  received: Buffer,
  messageId: string,
  senderTrust: SenderTrust = NO_SENDER_TRUST,
): Promise<ParsedMail> {
  const raw = asParsableMail(received);
  const headers = readHeaderSection(raw);
  if (!headers) throw new UnparseableMailError(NOT_MIME);
  if (raw.length > MAX_PARSE_BYTES) {
    throw new UnparseableMailError(`too large to parse: ${raw.length} bytes, the limit is ${MAX_PARSE_BYTES}`);
  }
  let mime: MimeContent;
  try {
    mime = await parseMime(raw);
  } catch (error) {
    throw new UnparseableMailError(`the MIME structure cannot be read: ${(error as Error).message}`);
  }
  const from = senderOf(mime.headers, headers);
  if (!from) throw new UnparseableMailError('the message has no From address that is a single mailbox (local@domain)');

  const html = mime.html ? sanitizeMailHtml(capText(mime.html)) : null;
  const ownText = mime.text?.trim() ? mime.text : undefined;
  const derived = ownText ?? (html ? htmlToPlainText(html) : undefined);
  const text = derived?.trim() ? capText(derived) : null;
  const classification = classifyMail(headers, from.address);
  const references = headers.references?.flatMap((value) => messageIdsIn(value)) ?? [];

  return {
    messageId,
    from,
    to: addressesIn(mime.headers.get('to')),
    cc: addressesIn(mime.headers.get('cc')),
    subject: withoutNul(String(mime.headers.get('subject') ?? '').trim()).slice(0, MAX_SUBJECT_CHARS),
    text,
    replyText: text ? replyPart(text) || null : null,
    html: html || null,
    inReplyTo: messageIdIn(headers['in-reply-to']?.[0]),
    references: references.slice(-MAX_REFERENCES),
    date: parseDateHeader(headers.date?.[0]),
    classification,
    senderVerdict: senderVerdict(headers, senderTrust),
    returnedMessageIds: classification === 'bounce' ? returnedMessageIds(mime.attachments, text) : [],
    attachments: mime.attachments.map((part, index) => toAttachment(part, index, html)),
  };
}

/** The Date header as a time, or null when it is missing or says no time we can read. */
export function parseDateHeader(value: string | undefined): Date | null {
  if (!value) return null;
  // Comments such as "(CET)" or "(Pacific Standard Time)" are allowed by RFC 5322 but trip Date.parse.
  const date = new Date(value.replace(/\([^()]*\)/g, ' ').trim());
  return Number.isNaN(date.getTime()) ? null : date;
}

/**
 * Who wrote the mail: From, else Sender, Reply-To or Return-Path. Some mail systems send bounces
 * from a bare `MAILER-DAEMON` without a domain; those get one, so the bounce is not lost.
 */
function senderOf(parsed: MimeContent['headers'], raw: MailHeaders): MailAddress | undefined {
  for (const header of ['from', 'sender', 'reply-to', 'return-path']) {
    const [first] = addressesIn(parsed.get(header));
    if (first) return first;
  }
  const daemon = raw.from?.[0]?.match(/\b(mailer-daemon|postmaster)\b/i);
  if (!daemon) return undefined;
  const messageId = messageIdIn(raw['message-id']?.[0]);
  const domain = messageId ? messageId.slice(messageId.lastIndexOf('@') + 1, -1).toLowerCase() : '';
  const address = `${daemon[1]!.toLowerCase()}@${domain}`;
  return { address: isSingleMailbox(address) ? address : `${daemon[1]!.toLowerCase()}@unknown.invalid`, name: null };
}

function addressesIn(value: HeaderValue | undefined): MailAddress[] {
  const groups = [value ?? []].flat() as AddressObject[];
  const flatten = (entries: EmailAddress[]): EmailAddress[] => entries.flatMap((entry) => [entry, ...flatten(entry.group ?? [])]);
  return (
    groups
      .flatMap((group) => flatten(group.value ?? []))
      .map((entry) => ({
        address: withoutNul(entry.address ?? '').toLowerCase(),
        name: withoutNul(entry.name ?? '').trim() || null,
      }))
      // `X <a@one.example,b@two.example>` is one "address" to the parser: only single mailboxes count.
      .filter((entry) => isSingleMailbox(entry.address))
  );
}

function toAttachment(part: MimeAttachment, index: number, html: string | null): ParsedAttachment {
  const contentType = part.contentType.toLowerCase();
  const contentId = part.contentId?.replace(/^<|>$/g, '').trim() || null;
  const shownInBody =
    part.related ||
    Boolean(contentId && html?.includes(`cid:${contentId}`)) ||
    (part.contentDisposition === 'inline' && contentType.startsWith('image/'));
  return {
    filename: cleanFilename(part.filename) ?? defaultFilename(contentType, index),
    contentType,
    size: part.content.length,
    contentId,
    inline: shownInBody,
    sha256: createHash('sha256').update(part.content).digest('hex'),
    // A copy of its own, so that the bytes can be transferred out of the parser thread.
    content: new Uint8Array(part.content),
  };
}

/** The last path segment, without control characters; undefined when nothing is left. */
function cleanFilename(filename: string | undefined): string | undefined {
  const name = Array.from(filename ?? '')
    .filter((char) => char >= ' ' && char !== '\u007f')
    .join('')
    .split(/[/\\]/)
    .pop()!
    .trim();
  return name && name !== '.' && name !== '..' ? name.slice(-MAX_FILENAME_CHARS) : undefined;
}

const NAMES_BY_TYPE: Record<string, string> = {
  'message/rfc822': 'message.eml',
  'message/global': 'message.eml',
  'text/rfc822-headers': 'headers.txt',
  'message/delivery-status': 'delivery-status.txt',
  'message/disposition-notification': 'disposition-notification.txt',
  'application/ms-tnef': 'winmail.dat',
  'text/calendar': 'invite.ics',
  'application/pdf': 'document.pdf',
  'image/jpeg': 'image.jpg',
};

function defaultFilename(contentType: string, index: number): string {
  const known = NAMES_BY_TYPE[contentType];
  if (known) return known;
  const [kind, subtype] = contentType.split('/');
  const extension = subtype && /^[a-z0-9]{1,8}$/.test(subtype) ? `.${subtype}` : '.bin';
  return `${kind === 'image' ? 'image' : 'attachment'}-${index + 1}${extension}`;
}

function capText(text: string): string {
  const clean = withoutNul(text);
  if (clean.length <= MAX_TEXT_CHARS) return clean;
  return `${clean.slice(0, MAX_TEXT_CHARS)}\n\n[… ${clean.length - MAX_TEXT_CHARS} more characters; the original mail is kept]`;
}

// PostgreSQL text cannot hold U+0000.
function withoutNul(text: string): string {
  return text.replaceAll('\u0000', '');
}
