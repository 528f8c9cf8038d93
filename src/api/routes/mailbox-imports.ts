import { randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Selectable } from 'kysely';
import { sql } from 'kysely';
import { deleteExportPieces, ExportTooLargeError, storeExportPieces } from '../../db/export-pieces.js';
import type { MailboxExportFormat, MailboxImportsTable, NotImportedMail } from '../../db/schema.js';
import { MAILBOX_IMPORT_STATES } from '../../domain/mailbox-import.js';
import { startMailboxImport } from '../../temporal/mailbox-import.js';
import { findChannel } from '../access.js';
import { requireAdmin } from '../auth.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { afterCursor, decodeCursor, PageQuerySchema, pageSchema, toPage } from '../pagination.js';
import { Problem, problemResponses } from '../problem.js';

// A whole mailbox export (mbox, or a Maildir as tar; gzipped or not) uploaded by an admin and imported into a
// channel in the background, as the first sync of a mailbox imports history: stored and threaded, nothing sent.
// The upload is streamed into the database in pieces: the API never holds the export.

const security = [{ apiKey: [] }];
const channelParams = z.object({ channelId: z.uuid() });
const importParams = z.object({ channelId: z.uuid(), importId: z.uuid() });
const DEFAULT_MAX_IMPORT_BYTES = 2 * 1024 ** 3;
// Imports run one activity each on the worker's mailbox queue: an account may not fill it with its own.
export const MAX_IMPORTS_IN_PROGRESS = 3;

/** The media types an export is uploaded as, and what each says about it (a gzip's content is recognised when read). */
const EXPORT_TYPES: Record<string, { format: MailboxExportFormat | null; compressed: boolean }> = {
  'application/mbox': { format: 'mbox', compressed: false },
  'application/x-tar': { format: 'maildir', compressed: false },
  'application/gzip': { format: null, compressed: true },
  'application/x-gzip': { format: null, compressed: true },
};

const binary = { schema: { type: 'string' as const, format: 'binary', minLength: 1 } };

const MailboxImportSchema = z
  .object({
    id: z.uuid(),
    channelId: z.uuid(),
    state: z.enum(MAILBOX_IMPORT_STATES).openapi({
      description: 'uploading while the export is received; uploaded until the worker starts it; then running until it ends',
    }),
    format: z.enum(['mbox', 'maildir']).nullable().openapi({ description: 'null for a gzip not read yet' }),
    compressed: z.boolean(),
    bytesTotal: z.number().int().openapi({ description: 'Bytes uploaded (as sent, compressed or not)' }),
    bytesProcessed: z.number().int().openapi({
      description:
        'Of those, how many are imported; of a gzipped export, how many are read (up to a few MiB ahead of the mail in hand)',
    }),
    mails: z.object({
      imported: z.number().int().openapi({ description: 'Stored and threaded into conversations' }),
      duplicates: z.number().int().openapi({ description: 'Stored before (same Message-ID): nothing new was created' }),
      rejected: z
        .number()
        .int()
        .openapi({
          description:
            'Kept with the reason but no conversation (not a mail, no sender, over the channel’s size limit: ' +
            'GET /v1/inbound-messages?status=rejected), or too large to store, or refused by the database (listed in notImported)',
        }),
      skipped: z.number().int().openapi({ description: 'Entries of a Maildir tar that are no mail (tmp/, server files, links)' }),
    }),
    notImported: z
      .array(
        z.object({
          offset: z.number().int().optional().openapi({ description: 'Where the mail starts in the (unpacked) mbox' }),
          entry: z.number().int().optional().openapi({ description: 'The tar entry’s index' }),
          name: z.string().optional().openapi({ description: 'The tar entry’s name' }),
          sizeBytes: z.number().int(),
          messageId: z.string().nullable(),
          reason: z.string(),
        }),
      )
      .openapi({
        description: 'The first 100 mails too large to store or refused by the database: where they are in the export and why',
      }),
    failureReason: z.string().nullable().openapi({ description: 'Why a failed import stopped (the export could not be read)' }),
    cancelRequested: z.boolean(),
    createdAt: z.iso.datetime(),
    startedAt: z.iso.datetime().nullable(),
    finishedAt: z.iso.datetime().nullable(),
  })
  .openapi('MailboxImport');

const uploadRoute = createRoute({
  method: 'post',
  path: '/v1/channels/{channelId}/imports',
  operationId: 'uploadMailboxImport',
  tags: ['Mailbox imports'],
  summary: 'Upload a mailbox export (mbox, or a Maildir as tar, gzipped or not) to import into the channel',
  description:
    'The body is the export as it is: `application/mbox` (mboxo, mboxrd, mboxcl), `application/x-tar` (a Maildir: the files ' +
    'under cur/ and new/, also of a Maildir++ tree of .Folder/cur; other entries are skipped and counted), or either ' +
    'gzipped (`application/gzip`, or the type with `Content-Encoding: gzip`). It is stored, answered 202 with the ' +
    'import, and imported in the background in file order: every mail through the ingest as history (stored and ' +
    'threaded, never answered automatically). A body over the limit (MAX_IMPORT_BYTES) is answered 413 and nothing is ' +
    'kept. An account runs at most 3 imports at once (409 beyond). Idempotency-Key is not honoured here: an upload ' +
    'repeated is a second import, whose mails are duplicates.',
  security,
  request: {
    params: channelParams,
    body: {
      required: true,
      content: { 'application/mbox': binary, 'application/x-tar': binary, 'application/gzip': binary },
    },
  },
  responses: {
    202: {
      description: 'Stored; the import runs in the background',
      headers: { Location: { description: 'The import', required: true, schema: { type: 'string' as const } } },
      content: { 'application/json': { schema: MailboxImportSchema } },
    },
    ...problemResponses(400, 401, 403, 404, 409, 413, 415, 422, 503),
    415: {
      ...problemResponses(415)[415]!,
      description:
        'Not one of the export types (application/mbox, application/x-tar, application/gzip), or an unknown Content-Encoding',
    },
  },
});

const listRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/imports',
  operationId: 'listMailboxImports',
  tags: ['Mailbox imports'],
  summary: "The channel's mailbox imports, newest first, with their progress",
  security,
  request: { params: channelParams, query: PageQuerySchema },
  responses: {
    200: {
      description: 'A page of imports',
      content: { 'application/json': { schema: pageSchema(MailboxImportSchema, 'MailboxImportPage') } },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/imports/{importId}',
  operationId: 'getMailboxImport',
  tags: ['Mailbox imports'],
  summary: 'One mailbox import: its state, bytes read and mails counted so far',
  security,
  request: { params: importParams },
  responses: {
    200: { description: 'The import', content: { 'application/json': { schema: MailboxImportSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

const cancelDescription =
  'The import stops between two mails: what it imported stays. An import not started yet ends at once. ' +
  'Answered 202 with the import (state cancelled once it has stopped); 409 when it has ended already.';
const cancelResponses = {
  202: { description: 'Cancelling, or cancelled', content: { 'application/json': { schema: MailboxImportSchema } } },
  ...problemResponses(401, 403, 404, 409, 422),
};

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/channels/{channelId}/imports/{importId}',
  operationId: 'deleteMailboxImport',
  tags: ['Mailbox imports'],
  summary: 'Cancel a mailbox import',
  description: cancelDescription,
  security,
  request: { params: importParams },
  responses: cancelResponses,
});

const cancelRoute = createRoute({
  method: 'post',
  path: '/v1/channels/{channelId}/imports/{importId}/cancel',
  operationId: 'cancelMailboxImport',
  tags: ['Mailbox imports'],
  summary: 'Cancel a mailbox import (the same as DELETE)',
  description: cancelDescription,
  security,
  request: { params: importParams },
  responses: cancelResponses,
});

function toMailboxImport(row: Selectable<MailboxImportsTable>) {
  return {
    id: row.id,
    channelId: row.channel_id,
    state: row.state,
    format: row.format,
    compressed: row.compressed,
    bytesTotal: Number(row.bytes_total),
    bytesProcessed: Number(row.bytes_processed),
    mails: {
      imported: row.mails_imported,
      duplicates: row.mails_duplicate,
      rejected: row.mails_rejected,
      skipped: row.entries_skipped,
    },
    notImported: row.not_imported as NotImportedMail[],
    failureReason: row.failure_reason,
    cancelRequested: row.cancel_requested_at !== null,
    createdAt: row.created_at.toISOString(),
    startedAt: row.started_at?.toISOString() ?? null,
    finishedAt: row.finished_at?.toISOString() ?? null,
  };
}

/** What the upload's headers say it is; a type or encoding we cannot read is a 415 naming what we take. */
function exportKind(contentType: string | undefined, contentEncoding: string | undefined) {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const kind = EXPORT_TYPES[type];
  if (!kind) {
    throw new Problem(
      415,
      'unsupported-media-type',
      'Not a mailbox export type',
      `send the export as application/mbox, application/x-tar (a Maildir) or application/gzip, not "${type.slice(0, 100)}"`,
    );
  }
  const encoding = (contentEncoding ?? 'identity').trim().toLowerCase();
  if (encoding === 'identity') return kind;
  if ((encoding === 'gzip' || encoding === 'x-gzip') && !kind.compressed) return { ...kind, compressed: true };
  throw new Problem(
    415,
    'unsupported-media-type',
    'Unsupported Content-Encoding',
    `an export may be gzipped once (Content-Encoding: gzip), not "${encoding.slice(0, 100)}"`,
  );
}

export function mailboxImportRoutes({ db, temporal, taskQueue, config }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();
  const maxBytes = config.MAX_IMPORT_BYTES ?? DEFAULT_MAX_IMPORT_BYTES;
  const tooLarge = () =>
    new Problem(413, 'too-large', 'Export too large', `the limit is ${maxBytes} bytes (MAX_IMPORT_BYTES); nothing was kept`);

  async function findImport(accountId: string, channelId: string, importId: string) {
    const row = await db
      .selectFrom('mailbox_imports')
      .selectAll()
      .where('id', '=', importId)
      .where('channel_id', '=', channelId)
      .where('account_id', '=', accountId)
      .executeTakeFirst();
    if (!row) throw new Problem(404, 'not-found', 'Import not found', `no import ${importId} on this channel`);
    return row;
  }

  app.openapi(listRoute, async (c) => {
    const user = c.get('user');
    requireAdmin(user, 'reads mailbox imports');
    const { channelId } = c.req.valid('param');
    const { cursor, limit } = c.req.valid('query');
    const channel = await findChannel(db, user, channelId, 'configure');
    let query = db
      .selectFrom('mailbox_imports as i')
      .selectAll('i')
      .where('i.channel_id', '=', channel.id)
      .orderBy('i.created_at', 'desc')
      .orderBy('i.id', 'desc')
      .limit(limit + 1);
    if (cursor) query = query.where(afterCursor('mailbox_imports', 'i', decodeCursor(cursor)));
    return c.json(toPage(await query.execute(), limit, toMailboxImport), 200);
  });

  app.openapi(uploadRoute, async (c) => {
    const user = c.get('user');
    requireAdmin(user, 'imports mailbox exports');
    const { channelId } = c.req.valid('param');
    const channel = await findChannel(db, user, channelId, 'configure');
    const kind = exportKind(c.req.header('content-type'), c.req.header('content-encoding'));
    const inProgress = await db
      .selectFrom('mailbox_imports')
      .select((eb) => eb.fn.countAll<string>().as('count'))
      .where('account_id', '=', user.accountId)
      .where('state', 'in', ['uploading', 'uploaded', 'running'])
      .executeTakeFirstOrThrow();
    if (Number(inProgress.count) >= MAX_IMPORTS_IN_PROGRESS) {
      throw new Problem(
        409,
        'imports-in-progress',
        'Too many imports at once',
        `at most ${MAX_IMPORTS_IN_PROGRESS} imports of an account run at once; wait for one to end, or cancel one`,
      );
    }
    const declared = Number(c.req.header('content-length') ?? Number.NaN);
    if (declared > maxBytes) throw tooLarge();
    const body = c.req.raw.body;
    if (!body || declared === 0) throw new Problem(400, 'empty', 'Empty export', 'the body is empty');

    const id = randomUUID();
    await db
      .insertInto('mailbox_imports')
      .values({
        id,
        account_id: user.accountId,
        channel_id: channel.id,
        state: 'uploading',
        format: kind.format,
        compressed: kind.compressed,
        not_imported: '[]',
      })
      .execute();
    // Whatever stops the upload (too large, empty, the client gone, Temporal away), nothing of it stays behind.
    const discard = () => db.deleteFrom('mailbox_imports').where('id', '=', id).execute();
    let bytes: number;
    try {
      bytes = await storeExportPieces(db, id, body as unknown as AsyncIterable<Uint8Array>, maxBytes);
    } catch (error) {
      await discard();
      if (error instanceof ExportTooLargeError) throw tooLarge();
      throw error;
    }
    if (bytes === 0) {
      await discard();
      throw new Problem(400, 'empty', 'Empty export', 'the body is empty');
    }
    await db.updateTable('mailbox_imports').set({ state: 'uploaded', bytes_total: bytes }).where('id', '=', id).execute();
    try {
      await startMailboxImport(temporal, { id, channelId: channel.id, channelName: channel.name, bytes }, taskQueue);
    } catch (error) {
      await discard();
      throw error;
    }
    const row = await findImport(user.accountId, channel.id, id);
    c.header('Location', `/v1/channels/${channel.id}/imports/${id}`);
    return c.json(toMailboxImport(row), 202);
  });

  app.openapi(getRoute, async (c) => {
    const user = c.get('user');
    requireAdmin(user, 'reads mailbox imports');
    const { channelId, importId } = c.req.valid('param');
    const channel = await findChannel(db, user, channelId, 'configure');
    return c.json(toMailboxImport(await findImport(user.accountId, channel.id, importId)), 200);
  });

  /** Asks the import to stop between two mails; one that has not started yet ends here. */
  async function cancel(user: AppEnv['Variables']['user'], channelId: string, importId: string) {
    requireAdmin(user, 'cancels mailbox imports');
    const channel = await findChannel(db, user, channelId, 'configure');
    const found = await findImport(user.accountId, channel.id, importId);
    const row = await db
      .updateTable('mailbox_imports')
      .set({
        cancel_requested_at: sql<Date>`coalesce(cancel_requested_at, now())`,
        state: sql<'cancelled'>`case when state = 'uploaded' then 'cancelled' else state end`,
        finished_at: sql<Date>`case when state = 'uploaded' then now() else finished_at end`,
      })
      .where('id', '=', found.id)
      .where('state', 'in', ['uploading', 'uploaded', 'running'])
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new Problem(409, 'import-ended', 'The import has ended', `its state is ${found.state}`);
    if (row.state === 'cancelled') await deleteExportPieces(db, row.id);
    return toMailboxImport(row);
  }

  app.openapi(deleteRoute, async (c) => {
    const { channelId, importId } = c.req.valid('param');
    return c.json(await cancel(c.get('user'), channelId, importId), 202);
  });

  app.openapi(cancelRoute, async (c) => {
    const { channelId, importId } = c.req.valid('param');
    return c.json(await cancel(c.get('user'), channelId, importId), 202);
  });

  return app;
}
