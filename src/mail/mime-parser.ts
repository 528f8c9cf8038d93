import { Transform, type TransformCallback } from 'node:stream';
import { MailParser, type AttachmentStream, type Headers, type MessageText } from 'mailparser';
import { decodeUndeclared, repairHeaderLine } from './undeclared-charset.js';

// mailparser (pinned) does the MIME work; this subclass changes only how text of unknown charset
// is decoded (mailparser reads it as UTF-8 and turns every other byte into U+FFFD), and collects
// the result the way its simpleParser does, without the conversions we do not use.

/** Marks body parts whose charset is missing, us-ascii or unknown, for decodeUndeclared. */
const UNDECLARED = 'x-mailroom-undeclared';
const ASCII_LABELS = new Set(['ascii', 'usascii', 'ansix341968']);

export interface MimeAttachment {
  filename: string | undefined;
  contentType: string;
  contentDisposition: string | undefined;
  contentId: string | undefined;
  /** In a multipart/related part: an image the HTML shows. */
  related: boolean;
  content: Buffer;
}

export interface MimeContent {
  headers: Headers;
  text: string | undefined;
  html: string | undefined;
  attachments: MimeAttachment[];
}

// The parts of mailparser's internals this subclass builds on (mailparser is pinned at 3.9.31).
interface ParserInternals {
  createNode(node: unknown): { contentType?: string; charset?: string; decoder?: unknown; isAttachment?: boolean };
  getDecoder(): { decodeStream(charset: string): NodeJS.ReadWriteStream };
  processHeaders(lines: Array<{ key: string; line: string }>): Headers;
}
const base = MailParser.prototype as unknown as ParserInternals;

class CharsetAwareMailParser extends MailParser {
  createNode(node: unknown) {
    const created = base.createNode.call(this, node);
    const label = created.charset?.toLowerCase().replace(/[^a-z0-9]/g, '');
    if (created.decoder && !created.isAttachment && (!label || ASCII_LABELS.has(label))) created.charset = UNDECLARED;
    return created;
  }

  getDecoder() {
    const declared = base.getDecoder.call(this);
    return {
      decodeStream(charset: string): NodeJS.ReadWriteStream {
        if (charset === UNDECLARED) return new UndeclaredCharsetDecoder();
        try {
          return declared.decodeStream(charset);
        } catch {
          return new UndeclaredCharsetDecoder(); // a label iconv-lite does not know
        }
      },
    };
  }

  processHeaders(lines: Array<{ key: string; line: string }>) {
    return base.processHeaders.call(
      this,
      (lines ?? []).map((line) => ({ ...line, line: repairHeaderLine(line.line) })),
    );
  }
}

/** Collects a part's bytes: the charset can only be guessed from all of them. */
class UndeclaredCharsetDecoder extends Transform {
  private readonly chunks: Buffer[] = [];

  override _transform(chunk: Buffer | string, encoding: BufferEncoding, done: TransformCallback) {
    this.chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk);
    done();
  }

  override _flush(done: TransformCallback) {
    done(null, Buffer.from(decodeUndeclared(Buffer.concat(this.chunks)), 'utf8'));
  }
}

/** Splits a raw mail into headers, text, HTML and attachments (message/rfc822 parts stay attachments). */
export function parseMime(raw: Buffer): Promise<MimeContent> {
  return new Promise((resolve, reject) => {
    const parser = new CharsetAwareMailParser({
      skipHtmlToText: true,
      skipTextToHtml: true,
      skipTextLinks: true,
      skipImageLinks: true,
      keepCidLinks: true,
      // A forwarded mail is kept whole as an .eml attachment rather than flattened into the text.
      ignoreEmbedded: true,
    } as ConstructorParameters<typeof MailParser>[0]);
    const content: MimeContent = { headers: new Map(), text: undefined, html: undefined, attachments: [] };
    const attachmentsRead: Array<Promise<void>> = [];
    parser.on('headers', (headers: Headers) => (content.headers = headers));
    parser.on('data', (data: AttachmentStream | MessageText) => {
      if (data.type === 'text') {
        content.text = data.text;
        content.html = typeof data.html === 'string' ? data.html : undefined;
        return;
      }
      const position = content.attachments.length;
      content.attachments.length += 1;
      const chunks: Buffer[] = [];
      data.content.on('data', (chunk: Buffer) => chunks.push(chunk));
      attachmentsRead.push(
        new Promise((done) =>
          data.content.on('end', () => {
            content.attachments[position] = {
              filename: data.filename,
              contentType: data.contentType,
              contentDisposition: data.contentDisposition,
              contentId: data.cid,
              related: Boolean(data.related),
              content: Buffer.concat(chunks),
            };
            data.release();
            done();
          }),
        ),
      );
    });
    parser.on('error', reject);
    parser.on('end', () => Promise.all(attachmentsRead).then(() => resolve(content), reject));
    parser.end(raw);
  });
}
