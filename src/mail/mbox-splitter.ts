// Splits an mbox (mboxo, mboxrd, mboxcl) into its mails as the bytes stream in: a mail starts with a `From ` line
// at the start of the file or after an empty line. Each mail keeps its bytes as they are, envelope line and `>From `
// quoting included (the ingest reads both); only the empty line that separates it from the next one is left out.
// The scan looks at line breaks and at most five bytes of each line: linear, whatever a line's length, and a mail
// over the size bound is measured and hashed, never held.

import { createHash, type Hash } from 'node:crypto';

const LF = 0x0a;
const CR = 0x0d;
const FROM_LINE = Buffer.from('From ', 'latin1');
// The empty line after a mail ("\r\n" at most) is read before it is known to be the separator.
const SEPARATOR_MAX_BYTES = 2;
/** Bytes of an oversized mail kept to name it (its header section): the ingest reads no further either. */
export const OVERSIZED_HEAD_BYTES = 256 * 1024;

/** One mail of the mbox, at `offset` (its `From ` line) and `size` bytes long. */
export interface MboxMail {
  offset: number;
  size: number;
  /** Where the next mail starts (or the end of the file): the position to resume at once this one is done. */
  nextOffset: number;
  /** The mail's bytes; null when it is larger than the bound (then `head` holds its first bytes and `sha256` names it). */
  raw: Buffer | null;
  head: Buffer;
  sha256: string | null;
}

/** The bytes are not an mbox at all: they do not start with a `From ` line. */
export class NotAnMboxError extends Error {
  override name = 'NotAnMboxError';
}

export interface MboxSplitterOptions {
  /** A mail larger than this is reported without its bytes. */
  maxMailBytes: number;
  /** The offset of the first byte given, which must be the start of a mail (or of the file). */
  startOffset?: number;
}

export class MboxSplitter {
  private readonly maxMailBytes: number;
  /** The offset of the next byte pushed. */
  private position: number;
  /** The mail being read: where it starts, its size, its bytes while within the bound. */
  private mail: { offset: number; size: number; parts: Buffer[]; head: Buffer[]; headSize: number; hash: Hash | null } | null =
    null;
  /** The first bytes of the current line (up to five), held back until they decide whether a mail starts there. */
  private lineHead = Buffer.alloc(0);
  /** Whether the current line's start is decided (its head flushed into the mail). */
  private lineDecided = false;
  /** Bytes of the current line so far, without its line break. */
  private lineLength = 0;
  /** The current line's first byte, to tell "\r\n" (an empty line) from a one-byte line. */
  private lineFirstByte: number | undefined;
  /** The size of the last complete line when it was empty (1 for "\n", 2 for "\r\n"), else 0. */
  private emptyLineBytes = 0;
  private atStart = true;
  private readonly startOffset: number;

  constructor({ maxMailBytes, startOffset = 0 }: MboxSplitterOptions) {
    this.maxMailBytes = maxMailBytes;
    this.position = startOffset;
    this.startOffset = startOffset;
  }

  /** Takes the next bytes; returns the mails they complete, in order. */
  push(chunk: Buffer): MboxMail[] {
    const done: MboxMail[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      const lineBreak = chunk.indexOf(LF, pos);
      const end = lineBreak === -1 ? chunk.length : lineBreak;
      if (!this.lineDecided) {
        const wanted = Math.min(FROM_LINE.length - this.lineHead.length, end - pos);
        this.lineHead = Buffer.concat([this.lineHead, chunk.subarray(pos, pos + wanted)]);
        this.lineLength += wanted;
        pos += wanted;
        // Decided once five bytes are there, or the line ended before.
        if (this.lineHead.length < FROM_LINE.length && pos === chunk.length) break;
        this.decideLine(this.position + pos - this.lineHead.length, done);
      }
      this.append(chunk.subarray(pos, end));
      this.lineLength += end - pos;
      pos = end;
      if (lineBreak !== -1) {
        this.append(chunk.subarray(lineBreak, lineBreak + 1));
        pos = lineBreak + 1;
        this.endLine();
      }
    }
    this.position += chunk.length;
    return done;
  }

  /** The end of the bytes: the last mail. */
  end(): MboxMail[] {
    const done: MboxMail[] = [];
    if (!this.lineDecided && this.lineHead.length > 0) this.decideLine(this.position - this.lineHead.length, done);
    // No mail at all: an empty file, or one resumed at its end (its last mail was done), where nothing is left.
    if (this.atStart && this.startOffset === 0) throw new NotAnMboxError('the export is empty');
    // A last mail that ends with an empty line (most writers add one after every mail) ends before it.
    if (this.mail) done.push(this.finish(this.position, this.lineLength === 0 ? this.emptyLineBytes : 0));
    this.mail = null;
    return done;
  }

  /** Whether the line starting at `lineOffset` starts a mail; its head goes into the mail it belongs to. */
  private decideLine(lineOffset: number, done: MboxMail[]) {
    const startsMail = this.lineHead.equals(FROM_LINE) && (this.atStart || this.emptyLineBytes > 0);
    if (this.atStart && !startsMail) {
      throw new NotAnMboxError('not an mbox: it does not begin with a "From " line');
    }
    if (startsMail) {
      if (this.mail) done.push(this.finish(lineOffset, this.emptyLineBytes));
      this.mail = { offset: lineOffset, size: 0, parts: [], head: [], headSize: 0, hash: null };
      this.atStart = false;
    }
    const head = this.lineHead;
    this.lineFirstByte = head[0];
    this.lineHead = Buffer.alloc(0);
    this.lineDecided = true;
    this.append(head);
  }

  private endLine() {
    const empty = this.lineLength === 0 || (this.lineLength === 1 && this.lineFirstByte === CR);
    this.emptyLineBytes = empty ? this.lineLength + 1 : 0;
    this.lineLength = 0;
    this.lineDecided = false;
  }

  private append(bytes: Buffer) {
    const mail = this.mail;
    if (!mail || bytes.length === 0) return;
    if (mail.headSize < OVERSIZED_HEAD_BYTES) {
      const kept = bytes.subarray(0, OVERSIZED_HEAD_BYTES - mail.headSize);
      mail.head.push(kept);
      mail.headSize += kept.length;
    }
    mail.size += bytes.length;
    if (mail.hash) {
      mail.hash.update(bytes);
    } else if (mail.size > this.maxMailBytes + SEPARATOR_MAX_BYTES) {
      // Over the bound: from here on only measured and hashed.
      mail.hash = createHash('sha256');
      for (const part of mail.parts) mail.hash.update(part);
      mail.hash.update(bytes);
      mail.parts = [];
    } else {
      mail.parts.push(bytes);
    }
  }

  /** The mail that ends where the next starts, without the empty line that separates them. */
  private finish(nextOffset: number, separatorBytes: number): MboxMail {
    const mail = this.mail!;
    const size = mail.size - separatorBytes;
    const head = Buffer.concat(mail.head).subarray(0, size);
    if (mail.hash) {
      // Hashed with the separator: a name for the mail, not a checksum anyone compares.
      return { offset: mail.offset, size, nextOffset, raw: null, head, sha256: mail.hash.digest('hex') };
    }
    const raw = Buffer.concat(mail.parts, mail.size).subarray(0, size);
    if (size > this.maxMailBytes) {
      return { offset: mail.offset, size, nextOffset, raw: null, head, sha256: createHash('sha256').update(raw).digest('hex') };
    }
    return { offset: mail.offset, size, nextOffset, raw, head, sha256: null };
  }
}
