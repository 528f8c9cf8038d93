import { createHash } from 'node:crypto';
import type { MailHeaders } from '../domain/classification.js';

// Header names in real mail are tokens (RFC 5322 allows more, but nobody sends it); the obsolete syntax
// (RFC 5322 §4.5) allows whitespace before the colon, and real mail still has it.
const HEADER_FIELD = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+[ \t]*:/;
const OBSOLETE_FIELD_NAME = /^([A-Za-z0-9!#$%&'*+.^_`|~-]+)[ \t]+:/gm;
// The mbox envelope line (`From sender date`), not a `From:` header (`From :` in the obsolete syntax).
const MBOX_ENVELOPE = /^From (?![ \t]*:)/;
// mboxrd quoting of body lines that start with "From ": one ">" more than the mail had.
const MBOX_QUOTED_FROM = /^>(>*From )/gm;
// At least one of these must be present for bytes to count as a mail.
const MAIL_HEADERS = ['from', 'sender', 'to', 'subject', 'date', 'message-id', 'received', 'mime-version', 'return-path'];
// A msg-id (RFC 5322 §3.6.4) is "<" id-left "@" id-right ">". No character class overlaps the next
// token, so every attempt stops at the next delimiter: linear in the header's length, whatever it holds.
// No control characters: none is allowed in a Message-ID, and PostgreSQL text cannot hold a NUL.
const BRACKETED_MESSAGE_ID = /<([^<>\s@\p{Cc}]+@[^<>\s\p{Cc}]+)>/gu;
/** How much of a mail is read for its header section: enough for any real one, bounded for hostile ones. */
const HEADER_WINDOW_BYTES = 256 * 1024;

/**
 * Reads the header section without a full parse, so the raw mail can be stored
 * under its Message-ID before anything else can fail.
 * Returns null when the bytes do not start with a header section at all.
 */
export function readHeaderSection(raw: Uint8Array): MailHeaders | null {
  const bytes = withoutMboxEnvelope(raw);
  const head = bytes.subarray(0, HEADER_WINDOW_BYTES).toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  // Without a body (text/rfc822-headers), the section ends with the last line break. A section longer than
  // the window ends with a line cut in two, perhaps inside its name: it is left out, not judged.
  const cut = end === -1 && bytes.length > HEADER_WINDOW_BYTES ? head.lastIndexOf('\n') : -1;
  const section = end !== -1 ? head.slice(0, end) : cut > 0 ? head.slice(0, cut) : head.replace(/\r?\n$/, '');
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

/** `<id@host>` from a Message-ID or In-Reply-To header value, or undefined when it holds none. */
export function messageIdIn(value: string | undefined): string | undefined {
  return messageIdsIn(value, 1)[0];
}

/**
 * Every `<id@host>` in a header value, in order (References): the bracketed ones, else bare
 * `id@host` words, which some mail systems write.
 */
export function messageIdsIn(value: string | undefined, limit = Number.POSITIVE_INFINITY): string[] {
  if (!value) return [];
  const ids: string[] = [];
  for (const match of value.matchAll(BRACKETED_MESSAGE_ID)) {
    ids.push(`<${match[1]}>`);
    if (ids.length >= limit) return ids;
  }
  if (ids.length > 0) return ids;
  for (const word of value.split(/[\s,]+/)) {
    const bare = word.startsWith('<') ? word.slice(1) : word;
    const id = bare.endsWith('>') ? bare.slice(0, -1) : bare;
    if (id.includes('@') && !id.startsWith('@') && !id.endsWith('@') && !/[<>\p{Cc}]/u.test(id)) ids.push(`<${id}>`);
    if (ids.length >= limit) break;
  }
  return ids;
}

/**
 * The dedupe key of a raw mail: its Message-ID, or for mail without one a stable id
 * derived from the fields that identify it, so the same mail posted twice maps to one key.
 */
export function dedupeKey(headers: MailHeaders, rawBytes: Uint8Array): string {
  const raw = withoutMboxEnvelope(rawBytes);
  const messageId = messageIdIn(headers['message-id']?.[0]);
  if (messageId) return messageId;
  const hash = createHash('sha256');
  for (const name of ['from', 'to', 'date', 'subject']) hash.update(`${name}:${headers[name]?.join(',') ?? ''}\n`);
  const bodyStart = raw.indexOf('\r\n\r\n') >= 0 ? raw.indexOf('\r\n\r\n') : raw.indexOf('\n\n');
  hash.update(bodyStart >= 0 ? raw.subarray(bodyStart) : raw);
  return `<${hash.digest('hex').slice(0, 40)}@synthetic.mailroom.invalid>`;
}

/**
 * The mail without the mbox envelope line that Postfix's pipe transport (flag F), procmail, fetchmail and
 * every mbox export put before the headers (`From jamis@example.edu Mon May  2 16:07:05 2005`); not copied.
 */
export function withoutMboxEnvelope(raw: Uint8Array): Buffer {
  const bytes = asBuffer(raw);
  if (!MBOX_ENVELOPE.test(bytes.toString('latin1', 0, Math.min(bytes.length, 64)))) return bytes;
  const lineEnd = bytes.indexOf(0x0a);
  return lineEnd === -1 ? bytes : bytes.subarray(lineEnd + 1);
}

/**
 * The mail as the MIME parser reads it: without an mbox envelope line, with the mbox `>From ` quoting of its
 * body undone (when it came from an mbox), and header names written without the obsolete space before the
 * colon. The stored raw mail stays as received; this copy is made (on a parser thread) only when needed.
 */
export function asParsableMail(raw: Uint8Array): Buffer {
  const received = asBuffer(raw);
  const mail = withoutMboxEnvelope(received);
  const fromMbox = mail.length !== received.length;
  const head = mail.toString('latin1', 0, Math.min(mail.length, HEADER_WINDOW_BYTES));
  const blankLine = head.search(/\r?\n\r?\n/);
  const headerEnd = blankLine === -1 ? head.length : blankLine;
  const header = head.slice(0, headerEnd);
  const obsolete = new RegExp(OBSOLETE_FIELD_NAME.source, 'm').test(header);
  const body = mail.subarray(headerEnd);
  const bodyText = fromMbox ? body.toString('latin1') : '';
  const quoted = fromMbox && new RegExp(MBOX_QUOTED_FROM.source, 'm').test(bodyText);
  if (!obsolete && !quoted) return mail;
  return Buffer.concat([
    obsolete ? Buffer.from(header.replace(OBSOLETE_FIELD_NAME, '$1:'), 'latin1') : mail.subarray(0, headerEnd),
    quoted ? Buffer.from(bodyText.replace(MBOX_QUOTED_FROM, '$1'), 'latin1') : body,
  ]);
}

/** Drivers hand bytea back as Buffer (pg) or as a plain Uint8Array (PGlite); parse both the same. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
