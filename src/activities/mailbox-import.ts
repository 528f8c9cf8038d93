import { Context } from '@temporalio/activity';
import { sql, type Selectable } from 'kysely';
import { deleteExportPieces, readExportPieces } from '../db/export-pieces.js';
import type { Channel, MailboxImportsTable, NotImportedMail } from '../db/schema.js';
import { describeImport, type MailboxImportProgress } from '../domain/mailbox-import.js';
import { MailRejectedError, ParserBusyError } from '../ingest/ingest.js';
import { messageIdIn, readHeaderSection } from '../mail/header-section.js';
import {
  ExportUnreadableError,
  gunzipBounded,
  maildirItems,
  mboxItems,
  recogniseFormat,
  skipBytes,
  type ExportFormat,
  type ExportItem,
  type ExportPlace,
  type ExportPosition,
} from '../mail/mailbox-export.js';
import type { ActivityDeps } from './deps.js';

/** How large one mail of an export, and a gzipped export unpacked, may be. */
export interface MailboxImportLimits {
  /** A larger mail is reported on the import (where, how large, why) but not stored: Config.MAX_INBOUND_BYTES. */
  maxMailBytes: number;
  /** Config.MAX_IMPORT_UNPACKED_BYTES. */
  maxUnpackedBytes: number;
  /** How long a run over an export as uploaded works before it returns its progress; 30 s unless given (tests: 0, a mail a run). */
  runMs?: number;
}

export const DEFAULT_MAILBOX_IMPORT_LIMITS: MailboxImportLimits = {
  maxMailBytes: 25 * 1024 * 1024,
  maxUnpackedBytes: 20 * 1024 ** 3,
};

// One run over an export as uploaded works this long, then returns, so the workflow's details show the progress;
// the next run goes on from the position the row keeps.
const RUN_MS = 30_000;
const HEARTBEAT_EVERY_MS = 5_000;
// The parser pool's queue is full: the same mail is handed over again after this pause.
const PARSER_BUSY_PAUSE_MS = 500;
// Entries that are no mail are counted in the row every this many, and at every mail.
const SKIPPED_PER_UPDATE = 200;
// The import's report names the first mails it could not store; the count has them all.
const NOT_IMPORTED_LISTED = 100;
// A gzip of text packs a few times over, a mailing list's archive some tens; far beyond is a bomb.
const MAX_GZIP_RATIO = 200;

/** What became of a mail: counted as such, or refused by the database for something in it (named). */
type Outcome = 'imported' | 'duplicate' | 'rejected' | { refused: string };

/**
 * PostgreSQL's data exceptions (class 22, e.g. a NUL byte in a Message-ID) and check violations: the same mail
 * fails the same way on every attempt, so it is reported and passed, never retried for ever.
 */
function refusalOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('22') || code === '23514') ? (error as Error).message : undefined;
}

/** Text from an export as the import's report may hold it (jsonb takes no NUL): control characters as "?", bounded. */
function printable(text: string, maxLength = 300): string {
  const bounded = text.length > maxLength ? `${text.slice(0, maxLength)}…` : text;
  return [...bounded].map((char) => (char < ' ' || char === '\x7f' ? '?' : char)).join('');
}

export function createMailboxImportActivities({ db, ingest, mailboxImports = DEFAULT_MAILBOX_IMPORT_LIMITS }: ActivityDeps) {
  async function progressOf(importId: string): Promise<MailboxImportProgress> {
    return progressFrom(await db.selectFrom('mailbox_imports').selectAll().where('id', '=', importId).executeTakeFirstOrThrow());
  }

  function progressFrom(row: Selectable<MailboxImportsTable>): MailboxImportProgress {
    return {
      state: row.state,
      bytesTotal: Number(row.bytes_total),
      bytesProcessed: Number(row.bytes_processed),
      imported: row.mails_imported,
      duplicates: row.mails_duplicate,
      rejected: row.mails_rejected,
      skipped: row.entries_skipped,
      failureReason: row.failure_reason,
    };
  }

  /** Ends the import; the stored export is deleted with it (nothing reads it again). */
  async function finish(importId: string, state: 'completed' | 'failed' | 'cancelled', failureReason: string | null = null) {
    await db
      .updateTable('mailbox_imports')
      .set({
        state,
        failure_reason: failureReason,
        finished_at: new Date(),
        ...(state === 'completed' ? { bytes_processed: sql<number>`bytes_total` } : {}),
      })
      .where('id', '=', importId)
      .where('state', 'in', ['uploaded', 'running'])
      .execute();
    await deleteExportPieces(db, importId);
  }

  /** Hands one mail to the ingest as the first sync of a mailbox does: stored and threaded, nothing sent. */
  async function ingestOne(channel: Channel, raw: Buffer, resumedAfterFailure: boolean, startedAt: Date): Promise<Outcome> {
    const context = Context.current();
    for (;;) {
      try {
        const result = await ingest.ingestRawMail(channel, raw, { via: 'import', imported: true });
        if (!result.duplicate) return 'imported';
        // The mail in hand when an earlier attempt stopped may have been stored by it: then it is this import's.
        if (resumedAfterFailure) {
          const stored = await db
            .selectFrom('inbound_messages')
            .select(['received_via', 'received_at'])
            .where('id', '=', result.inboundMessageId)
            .executeTakeFirstOrThrow();
          if (stored.received_via === 'import' && stored.received_at >= startedAt) return 'imported';
        }
        return 'duplicate';
      } catch (error) {
        if (error instanceof ParserBusyError) {
          await context.sleep(PARSER_BUSY_PAUSE_MS); // the same mail again: the position stays before it
          continue;
        }
        if (error instanceof MailRejectedError) return 'rejected'; // kept with its reason, listed as rejected mail
        const refused = refusalOf(error);
        if (refused) return { refused };
        throw error; // the database or Temporal is away: the activity is retried from the mail in hand
      }
    }
  }

  /** A mail in the import's report: where it is in the export, how large, what it calls itself, and why. */
  function notImported(place: ExportPlace, sizeBytes: number, head: Buffer, reason: string): NotImportedMail {
    const messageId = messageIdIn(readHeaderSection(head)?.['message-id']?.[0]);
    return {
      ...('name' in place ? { entry: place.entry, name: printable(place.name) } : place),
      sizeBytes,
      messageId: messageId ? printable(messageId) : null,
      reason: printable(reason, 1000),
    };
  }

  /**
   * The export's mails from the position the row keeps: the first byte of the next mail, or of the next tar entry's
   * first header. An export as uploaded is read from there; a gzipped one is unpacked again from its start up to it.
   */
  async function itemsOf(
    row: {
      id: string;
      format: ExportFormat | null;
      compressed: boolean;
      resume_offset: number;
      resume_entry: number;
      bytes_total: number;
    },
    onRead: (readTo: number) => void,
  ): Promise<{ format: ExportFormat; items: AsyncIterable<ExportItem> }> {
    const { resume_offset: startOffset, resume_entry: firstEntry } = row;
    let format = row.format;
    let bytes: AsyncIterable<Buffer>;
    if (row.compressed) {
      const maxUnpacked = Math.min(mailboxImports.maxUnpackedBytes, row.bytes_total * MAX_GZIP_RATIO);
      const unpacked = gunzipBounded(readExportPieces(db, row.id, 0, onRead), maxUnpacked);
      if (!format) {
        ({ format, bytes } = await recogniseFormat(unpacked));
        await db.updateTable('mailbox_imports').set({ format }).where('id', '=', row.id).execute();
      } else {
        bytes = unpacked;
      }
      bytes = skipBytes(bytes, startOffset);
    } else {
      bytes = readExportPieces(db, row.id, startOffset, onRead);
    }
    const { maxMailBytes } = mailboxImports;
    const items =
      format === 'mbox'
        ? mboxItems(bytes, { maxMailBytes, startOffset })
        : maildirItems(bytes, { maxMailBytes, startOffset, firstEntry });
    return { format: format!, items };
  }

  return {
    /**
     * Imports an uploaded export mail by mail in file order, each through the ingest as imported (stored and
     * threaded, never answered automatically), and returns where the import stands: an export as uploaded for up to
     * half a minute a run, a gzipped one (which cannot be entered in the middle) to its end. Counts and the position
     * of the next mail are written after each mail and heartbeated, so a retried or the next run goes on there (the
     * ingest dedupes the mail that was in hand). Mail the channel refuses, unparseable or duplicate mail is counted
     * and the import goes on; an export that cannot be read as what it claims ends the import as failed.
     */
    async importMailboxExport({ importId }: { importId: string }): Promise<MailboxImportProgress> {
      const context = Context.current();
      const started = await db
        .updateTable('mailbox_imports')
        .set({ state: 'running', started_at: sql<Date>`coalesce(started_at, now())` })
        .where('id', '=', importId)
        .where('state', 'in', ['uploaded', 'running'])
        .returningAll()
        .executeTakeFirst();
      if (!started) return progressOf(importId); // ended already (a cancel before it started)
      if (started.cancel_requested_at) {
        await finish(importId, 'cancelled');
        return progressOf(importId);
      }
      const channel = await db
        .selectFrom('channels')
        .selectAll()
        .where('id', '=', started.channel_id)
        .where('deleted_at', 'is', null)
        .executeTakeFirst();
      if (!channel) {
        await finish(importId, 'failed', 'the channel was deleted');
        return progressOf(importId);
      }
      const resumedAfterFailure = context.info.attempt > 1;
      let readTo = Number(started.bytes_processed);
      let position: ExportPosition = { offset: Number(started.resume_offset), entry: started.resume_entry };
      const counts = { imported: 0, duplicate: 0, rejected: 0, skipped: 0 };
      let unsaved = 0;
      let firstMail = true;
      let cancelled = false;
      // An export as uploaded is read up to the mail in hand exactly, and entered where the last run stopped;
      // a gzipped one is read up to the stored piece in hand, and unpacked from its start.
      const seekable = !started.compressed;
      const deadline = seekable ? Date.now() + (mailboxImports.runMs ?? RUN_MS) : Number.POSITIVE_INFINITY;
      let progress = '';
      const heartbeat = () => context.heartbeat({ ...position, progress });

      /** Writes the counts, the position and a mail for the report; true when a cancel was asked for meanwhile. */
      const save = async (reported?: NotImportedMail): Promise<boolean> => {
        const row = await db
          .updateTable('mailbox_imports')
          .set({
            resume_offset: position.offset,
            resume_entry: position.entry,
            bytes_processed: sql<number>`greatest(bytes_processed, ${seekable ? position.offset : readTo})`,
            mails_imported: sql<number>`mails_imported + ${counts.imported}`,
            mails_duplicate: sql<number>`mails_duplicate + ${counts.duplicate}`,
            mails_rejected: sql<number>`mails_rejected + ${counts.rejected}`,
            entries_skipped: sql<number>`entries_skipped + ${counts.skipped}`,
            ...(reported
              ? {
                  not_imported: sql<string>`case when jsonb_array_length(not_imported) < ${NOT_IMPORTED_LISTED}
                    then not_imported || ${JSON.stringify([reported])}::jsonb else not_imported end`,
                }
              : {}),
          })
          .where('id', '=', importId)
          .returningAll()
          .executeTakeFirstOrThrow();
        counts.imported = counts.duplicate = counts.rejected = counts.skipped = 0;
        unsaved = 0;
        // In words, for the Temporal UI's pending activity: the workflow's details change only between runs.
        progress = describeImport(progressFrom(row));
        heartbeat();
        return row.cancel_requested_at !== null;
      };

      // A slow mail (the parser pool full, Temporal slow to answer) never times the run out.
      const heartbeats = setInterval(heartbeat, HEARTBEAT_EVERY_MS);
      try {
        const { items } = await itemsOf(
          {
            id: importId,
            format: started.format,
            compressed: started.compressed,
            resume_offset: position.offset,
            resume_entry: position.entry,
            bytes_total: Number(started.bytes_total),
          },
          (to) => (readTo = to),
        );
        for await (const item of items) {
          context.cancellationSignal.throwIfAborted(); // the worker stops: Temporal retries from the saved position
          position = item.next;
          if (item.kind === 'directory' || item.kind === 'skipped') {
            if (item.kind === 'skipped') counts.skipped++;
            if (++unsaved >= SKIPPED_PER_UPDATE) cancelled = await save();
          } else if (item.kind === 'oversized') {
            counts.rejected++;
            const reason = `too large: ${item.sizeBytes} bytes, Mailroom takes mails up to ${mailboxImports.maxMailBytes} bytes; not stored`;
            cancelled = await save(notImported(item.place, item.sizeBytes, item.head, reason));
          } else {
            const outcome = await ingestOne(channel, item.raw, resumedAfterFailure && firstMail, started.started_at!);
            firstMail = false;
            if (typeof outcome === 'string') {
              counts[outcome]++;
              cancelled = await save();
            } else {
              counts.rejected++;
              const reason = `the database refused it: ${outcome.refused}`;
              cancelled = await save(notImported(item.place, item.raw.length, item.raw, reason));
            }
          }
          if (cancelled) break; // between mails: what is imported stays
          // After a mail (saved above), so that the next run starts where this one stopped.
          if (item.kind !== 'directory' && item.kind !== 'skipped' && Date.now() >= deadline) return progressOf(importId);
        }
      } catch (error) {
        if (!(error instanceof ExportUnreadableError)) throw error;
        await save();
        await finish(importId, 'failed', error.message);
        return progressOf(importId);
      } finally {
        clearInterval(heartbeats);
      }
      if (!cancelled) await save();
      await finish(importId, cancelled ? 'cancelled' : 'completed');
      return progressOf(importId);
    },
  };
}
