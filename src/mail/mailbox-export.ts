// Reads a mailbox export as a stream of its mails: an mbox, or a Maildir (also Maildir++) packed as tar, either of
// them gzipped. Nothing is held but the mail in hand (up to a bound) and a few MiB of buffers; an import resumes at
// the byte offset of its next mail (mbox) or of its next tar entry's first header.

import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { MboxSplitter, NotAnMboxError, OVERSIZED_HEAD_BYTES } from './mbox-splitter.js';

export type ExportFormat = 'mbox' | 'maildir';

/** Where to go on after an item: the (unpacked) byte offset of the next mail, or of the next tar entry and its index. */
export interface ExportPosition {
  offset: number;
  entry: number;
}

/** Where an item sits in the export, for the import's report. */
export type ExportPlace = { offset: number } | { entry: number; name: string };

export type ExportItem =
  | { kind: 'mail'; raw: Buffer; place: ExportPlace; next: ExportPosition }
  /** Larger than the bound: measured, never held; `head` holds its first bytes (its header section). */
  | { kind: 'oversized'; sizeBytes: number; head: Buffer; place: ExportPlace; next: ExportPosition }
  /** A tar entry that is no Maildir mail (tmp/, dovecot files, links, ...); directories are not reported. */
  | { kind: 'skipped'; place: ExportPlace; next: ExportPosition }
  | { kind: 'directory'; next: ExportPosition };

/** The export cannot be read as what it claims to be: the import fails with this reason. */
export class ExportUnreadableError extends Error {
  override name = 'ExportUnreadableError';
}

/**
 * The bytes of a gzipped export, unpacked, stopping with a reason past `maxBytes` (a decompression bomb). The
 * count is of unpacked bytes from the start, so a resumed import that skips what it did counts them too.
 */
export async function* gunzipBounded(source: AsyncIterable<Buffer>, maxBytes: number): AsyncGenerator<Buffer> {
  const gunzip = createGunzip();
  const input = Readable.from(source);
  const feeding = pipeline(input, gunzip).catch(() => undefined); // its error reaches the loop below
  let unpacked = 0;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      unpacked += chunk.length;
      if (unpacked > maxBytes) {
        throw new ExportUnreadableError(
          `the export unpacks to more than ${maxBytes} bytes (stopped after ${unpacked} unpacked bytes): refused as a decompression bomb`,
        );
      }
      yield chunk;
    }
  } catch (error) {
    if (isZlibError(error)) throw new ExportUnreadableError(`not a readable gzip file: ${(error as Error).message}`);
    throw error;
  } finally {
    input.destroy();
    gunzip.destroy();
    await feeding;
  }
}

function isZlibError(error: unknown): boolean {
  return typeof (error as { code?: unknown })?.code === 'string' && (error as { code: string }).code.startsWith('Z_');
}

/** Leaves out the first `count` bytes (what a resumed import did before). */
export async function* skipBytes(source: AsyncIterable<Buffer>, count: number): AsyncGenerator<Buffer> {
  let left = count;
  for await (const chunk of source) {
    if (left >= chunk.length) {
      left -= chunk.length;
      continue;
    }
    yield left > 0 ? chunk.subarray(left) : chunk;
    left = 0;
  }
}

const TAR_MAGIC_OFFSET = 257;

/** What a gzipped export holds, from its first bytes; the bytes are all given back with it. */
export async function recogniseFormat(
  source: AsyncIterable<Buffer>,
): Promise<{ format: ExportFormat; bytes: AsyncIterable<Buffer> }> {
  const iterator = source[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let size = 0;
  let ended = false;
  while (size < TAR_MAGIC_OFFSET + 5) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    head.push(next.value);
    size += next.value.length;
  }
  const start = Buffer.concat(head);
  const format: ExportFormat | undefined =
    start.subarray(0, 5).toString('latin1') === 'From '
      ? 'mbox'
      : start.subarray(TAR_MAGIC_OFFSET, TAR_MAGIC_OFFSET + 5).toString('latin1') === 'ustar'
        ? 'maildir'
        : undefined;
  if (!format) {
    throw new ExportUnreadableError(
      'the gzipped export is neither an mbox (it does not begin with a "From " line) nor a tar archive (a Maildir)',
    );
  }
  async function* all(): AsyncGenerator<Buffer> {
    if (start.length > 0) yield start;
    if (ended) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { format, bytes: all() };
}

/** The mails of an mbox from `startOffset` on (the start of a mail); a mail over `maxMailBytes` is measured only. */
export async function* mboxItems(
  source: AsyncIterable<Buffer>,
  { startOffset, maxMailBytes }: { startOffset: number; maxMailBytes: number },
): AsyncGenerator<ExportItem> {
  const splitter = new MboxSplitter({ maxMailBytes, startOffset });
  try {
    for await (const chunk of source) {
      for (const mail of splitter.push(chunk)) yield asItem(mail);
    }
    for (const mail of splitter.end()) yield asItem(mail);
  } catch (error) {
    if (error instanceof NotAnMboxError) throw new ExportUnreadableError(error.message);
    throw error;
  }
}

function asItem(mail: ReturnType<MboxSplitter['end']>[number]): ExportItem {
  const place = { offset: mail.offset };
  const next = { offset: mail.nextOffset, entry: 0 };
  return mail.raw
    ? { kind: 'mail', raw: mail.raw, place, next }
    : { kind: 'oversized', sizeBytes: mail.size, head: mail.head, place, next };
}

/**
 * Whether a tar entry is a Maildir mail: a file right inside a `cur` or `new` folder, at any depth (`cur/…`,
 * `Maildir/new/…`, a Maildir++ `.Sent/cur/…`). `tmp/` holds deliveries in progress, the rest is the server's own.
 */
export function isMaildirMail(name: string): boolean {
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.length < 2) return false;
  const folder = parts[parts.length - 2];
  return (folder === 'cur' || folder === 'new') && !parts[parts.length - 1]!.startsWith('.');
}

/** Where an entry's data starts in the bytes given to tar-stream (3.x sets it on every header it reads). */
type HeaderWithOffset = tar.Header & { byteOffset?: number };

/**
 * The mails of a Maildir tar. `source` starts at byte `startOffset` of the tar, the first header of entry
 * `firstEntry` (where an import resumes); each item says where the next entry's first header is.
 */
export async function* maildirItems(
  source: AsyncIterable<Buffer>,
  { startOffset = 0, firstEntry = 0, maxMailBytes }: { startOffset?: number; firstEntry?: number; maxMailBytes: number },
): AsyncGenerator<ExportItem> {
  const extract = tar.extract();
  let sourceError: unknown;
  const feeding = pipeline(
    Readable.from(
      (async function* () {
        try {
          yield* source;
        } catch (error) {
          sourceError = error;
          throw error;
        }
      })(),
    ),
    extract,
  ).catch(() => undefined); // its error reaches the loop below
  let index = firstEntry;
  try {
    for await (const entry of extract) {
      const { name, type, size = 0, byteOffset = Number.NaN } = entry.header as HeaderWithOffset;
      const here = index++;
      // Data padded to a whole 512-byte block; a directory has none, whatever its size field says.
      const dataBytes = type === 'directory' ? 0 : Math.ceil(size / 512) * 512;
      const next = { offset: startOffset + byteOffset + dataBytes, entry: index };
      if (type === 'directory') {
        entry.resume();
        yield { kind: 'directory', next };
      } else if ((type !== 'file' && type !== 'contiguous-file') || !isMaildirMail(name)) {
        entry.resume();
        yield { kind: 'skipped', place: { entry: here, name }, next };
      } else if (size > maxMailBytes) {
        const head = await readAtMost(entry as AsyncIterable<Buffer>, OVERSIZED_HEAD_BYTES);
        yield { kind: 'oversized', sizeBytes: size, head, place: { entry: here, name }, next };
      } else {
        yield { kind: 'mail', raw: await readAtMost(entry as AsyncIterable<Buffer>, size), place: { entry: here, name }, next };
      }
    }
  } catch (error) {
    if (sourceError) throw sourceError;
    if (error instanceof ExportUnreadableError) throw error;
    throw new ExportUnreadableError(`not a tar archive of a Maildir: ${(error as Error).message}`);
  } finally {
    extract.destroy();
    await feeding;
  }
}

/** The first `limit` bytes of an entry, read to its end. */
async function readAtMost(entry: AsyncIterable<Buffer>, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of entry) {
    if (size >= limit) continue;
    const kept = chunk.subarray(0, limit - size);
    parts.push(kept);
    size += kept.length;
  }
  return Buffer.concat(parts, size);
}
