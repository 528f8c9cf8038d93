import { createHash } from 'node:crypto';
import { simpleParser, type AddressObject } from 'mailparser';
import type { MailClassification } from '../db/schema.js';
import { classifyMail, type MailHeaders } from '../domain/classification.js';

export interface ParsedMail {
  messageId: string;
  from: { address: string; name: string | null };
  subject: string;
  text: string | null;
  html: string | null;
  inReplyTo: string | undefined;
  references: string[];
  date: Date | null;
  classification: MailClassification;
}

/** A raw message that cannot become a conversation, with the reason an operator reads. */
export class UnparseableMailError extends Error {
  override name = 'UnparseableMailError';
}

export const NOT_MIME = 'not an RFC 822 message: it does not start with a header section';

// Header names in real mail are tokens (RFC 5322 allows more, but nobody sends it).
const HEADER_FIELD = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+:/;
// At least one of these must be present for bytes to count as a mail.
const MAIL_HEADERS = ['from', 'sender', 'to', 'subject', 'date', 'message-id', 'received', 'mime-version', 'return-path'];
const MESSAGE_ID = /<?([^<>\s]+@[^<>\s]+?)>?(?:\s|$)/;

/**
 * Reads the header section without a full parse, so the raw mail can be stored
 * under its Message-ID before anything else can fail.
 * Returns null when the bytes do not start with a header section at all.
 */
export function readHeaderSection(raw: Uint8Array): MailHeaders | null {
  const head = asBuffer(raw)
    .subarray(0, 256 * 1024)
    .toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  const section = end === -1 ? head : head.slice(0, end);
  const lines = section.split(/\r?\n/);
  if (!lines[0] || !HEADER_FIELD.test(lines[0])) return null;

  const headers: Record<string, string[]> = {};
  let current: { name: string; value: string } | undefined;
  const flush = () => {
    if (current) (headers[current.name] ??= []).push(current.value.trim());
  };
  for (const line of lines) {
    if (/^[ \t]/.test(line) && current) {
      current.value += ` ${line.trim()}`; // folded continuation line
    } else if (HEADER_FIELD.test(line)) {
      flush();
      const colon = line.indexOf(':');
      current = { name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1) };
    } else {
      return null;
    }
  }
  flush();
  return MAIL_HEADERS.some((name) => name in headers) ? headers : null;
}

/**
 * The dedupe key of a raw mail: its Message-ID, or for mail without one a stable id
 * derived from the fields that identify it, so the same mail posted twice maps to one key.
 */
export function dedupeKey(headers: MailHeaders, rawBytes: Uint8Array): string {
  const raw = asBuffer(rawBytes);
  const messageId = headers['message-id']?.[0]?.match(MESSAGE_ID);
  if (messageId) return `<${messageId[1]}>`;
  const hash = createHash('sha256');
  for (const name of ['from', 'to', 'date', 'subject']) hash.update(`${name}:${headers[name]?.join(',') ?? ''}\n`);
  const bodyStart = raw.indexOf('\r\n\r\n') >= 0 ? raw.indexOf('\r\n\r\n') : raw.indexOf('\n\n');
  hash.update(bodyStart >= 0 ? raw.subarray(bodyStart) : raw);
  return `<${hash.digest('hex').slice(0, 40)}@synthetic.mailroom.invalid>`;
}

/** Drivers hand bytea back as Buffer (pg) or as a plain Uint8Array (PGlite); parse both the same. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function firstAddress(value: AddressObject | AddressObject[] | undefined): { address: string; name: string | null } | undefined {
  const list = Array.isArray(value) ? value : value ? [value] : [];
  for (const group of list) {
    for (const entry of group.value) {
      if (entry.address) return { address: entry.address.toLowerCase(), name: entry.name || null };
    }
  }
  return undefined;
}

/** Parses a stored raw mail into what Mailroom keeps of it. Throws UnparseableMailError with a reason. */
export async function parseMail(rawBytes: Uint8Array, messageId: string): Promise<ParsedMail> {
  const raw = asBuffer(rawBytes);
  const headers = readHeaderSection(raw);
  if (!headers) throw new UnparseableMailError(NOT_MIME);
  // Conversions we do not use are skipped: mailparser's linkify and text→HTML are its known slow paths.
  const parsed = await simpleParser(raw, { skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true });
  const from = firstAddress(parsed.from) ?? firstAddress(parsed.replyTo);
  if (!from) throw new UnparseableMailError('the message has no From address');
  const references = typeof parsed.references === 'string' ? [parsed.references] : (parsed.references ?? []);
  return {
    messageId,
    from,
    subject: parsed.subject?.trim() ?? '',
    text: parsed.text ?? null,
    html: typeof parsed.html === 'string' ? parsed.html : null,
    inReplyTo: parsed.inReplyTo,
    references,
    date: parsed.date ?? null,
    classification: classifyMail(headers, from.address),
  };
}
