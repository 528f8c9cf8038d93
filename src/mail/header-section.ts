import { createHash } from 'node:crypto';
import type { MailHeaders } from '../domain/classification.js';

// Header names in real mail are tokens (RFC 5322 allows more, but nobody sends it).
const HEADER_FIELD = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+:/;
// At least one of these must be present for bytes to count as a mail.
const MAIL_HEADERS = ['from', 'sender', 'to', 'subject', 'date', 'message-id', 'received', 'mime-version', 'return-path'];
// A msg-id (RFC 5322 §3.6.4) is "<" id-left "@" id-right ">". No character class overlaps the next
// token, so every attempt stops at the next delimiter: linear in the header's length, whatever it holds.
const BRACKETED_MESSAGE_ID = /<([^<>\s@]+@[^<>\s]+)>/g;
/** How much of a mail is read for its header section: enough for any real one, bounded for hostile ones. */
const HEADER_WINDOW_BYTES = 256 * 1024;

/**
 * Reads the header section without a full parse, so the raw mail can be stored
 * under its Message-ID before anything else can fail.
 * Returns null when the bytes do not start with a header section at all.
 */
export function readHeaderSection(raw: Uint8Array): MailHeaders | null {
  const bytes = asBuffer(raw);
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
    if (id.includes('@') && !id.startsWith('@') && !id.endsWith('@') && !/[<>]/.test(id)) ids.push(`<${id}>`);
    if (ids.length >= limit) break;
  }
  return ids;
}

/**
 * The dedupe key of a raw mail: its Message-ID, or for mail without one a stable id
 * derived from the fields that identify it, so the same mail posted twice maps to one key.
 */
export function dedupeKey(headers: MailHeaders, rawBytes: Uint8Array): string {
  const raw = asBuffer(rawBytes);
  const messageId = messageIdIn(headers['message-id']?.[0]);
  if (messageId) return messageId;
  const hash = createHash('sha256');
  for (const name of ['from', 'to', 'date', 'subject']) hash.update(`${name}:${headers[name]?.join(',') ?? ''}\n`);
  const bodyStart = raw.indexOf('\r\n\r\n') >= 0 ? raw.indexOf('\r\n\r\n') : raw.indexOf('\n\n');
  hash.update(bodyStart >= 0 ? raw.subarray(bodyStart) : raw);
  return `<${hash.digest('hex').slice(0, 40)}@synthetic.mailroom.invalid>`;
}

/** Drivers hand bytea back as Buffer (pg) or as a plain Uint8Array (PGlite); parse both the same. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
