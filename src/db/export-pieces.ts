import { sql } from 'kysely';
import type { Db } from './connection.js';

// An uploaded mailbox export is kept in the database in pieces of equal size (the last one shorter), so the
// API that takes it and the worker that reads it share no disk, memory holds one piece at a time, and a byte
// offset names its piece without reading those before it.

export const EXPORT_PIECE_BYTES = 4 * 1024 * 1024;

/** The export is larger than the limit; what was stored of it is removed by the caller. */
export class ExportTooLargeError extends Error {
  override name = 'ExportTooLargeError';
  constructor(readonly limit: number) {
    super(`the export is larger than the limit of ${limit} bytes`);
  }
}

/** Stores a streamed upload as pieces of `importId`, up to `maxBytes`; returns its size. */
export async function storeExportPieces(
  db: Db,
  importId: string,
  body: AsyncIterable<Uint8Array>,
  maxBytes: number,
): Promise<number> {
  let piece = Buffer.allocUnsafe(EXPORT_PIECE_BYTES);
  let filled = 0;
  let position = 0;
  let total = 0;
  const flush = async () => {
    await db
      .insertInto('mailbox_import_pieces')
      .values({ import_id: importId, position, data: piece.subarray(0, filled) })
      .execute();
    position++;
    filled = 0;
    piece = Buffer.allocUnsafe(EXPORT_PIECE_BYTES);
  };
  for await (const received of body) {
    total += received.length;
    if (total > maxBytes) throw new ExportTooLargeError(maxBytes);
    let at = 0;
    while (at < received.length) {
      const taken = Math.min(EXPORT_PIECE_BYTES - filled, received.length - at);
      piece.set(received.subarray(at, at + taken), filled);
      filled += taken;
      at += taken;
      if (filled === EXPORT_PIECE_BYTES) await flush();
    }
  }
  if (filled > 0) await flush();
  return total;
}

/**
 * The stored export from byte `offset` on, one piece at a time; `onRead` learns how far the stored bytes have
 * been read (for the import's progress).
 */
export async function* readExportPieces(
  db: Db,
  importId: string,
  offset = 0,
  onRead: (readTo: number) => void = () => undefined,
): AsyncGenerator<Buffer> {
  let position = Math.floor(offset / EXPORT_PIECE_BYTES);
  let skip = offset % EXPORT_PIECE_BYTES;
  for (;;) {
    const row = await db
      .selectFrom('mailbox_import_pieces')
      .select('data')
      .where('import_id', '=', importId)
      .where('position', '=', position)
      .executeTakeFirst();
    if (!row) return;
    const data = Buffer.from(row.data.buffer, row.data.byteOffset, row.data.byteLength);
    onRead(position * EXPORT_PIECE_BYTES + data.length);
    if (skip < data.length) yield data.subarray(skip);
    skip = Math.max(0, skip - data.length);
    position++;
  }
}

/** Frees the space of an export whose import has ended. */
export async function deleteExportPieces(db: Db, importId: string): Promise<void> {
  await db.deleteFrom('mailbox_import_pieces').where('import_id', '=', importId).execute();
}

// An upload cut off with its API process (a crash, a kill) is left in state uploading with the pieces it got;
// after this long nobody is still sending it.
const ABANDONED_AFTER = '1 day';

/** Deletes uploads that were cut off, with their pieces. For the mail reconciler's pass. */
export async function forgetAbandonedUploads(db: Db): Promise<void> {
  await db
    .deleteFrom('mailbox_imports')
    .where('state', '=', 'uploading')
    .where('created_at', '<', sql<Date>`now() - ${ABANDONED_AFTER}::interval`)
    .execute();
}
