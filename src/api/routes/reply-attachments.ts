import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import busboy from 'busboy';
import { sql } from 'kysely';
import type { Db } from '../../db/connection.js';
import { sanitizeFilename } from '../../domain/attachment-filename.js';
import { findConversation } from '../access.js';
import type { ApiDeps, AppEnv, AuthenticatedUser } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// Files an agent attaches to a reply: uploaded as multipart/form-data, streamed into the database part by part
// (never the whole file in memory), up to the channel's attachment limit; a reply then names them by id.

export const REPLY_UPLOAD_PATH = '/v1/conversations/:conversationId/attachments';
/** Uploads that wait for a reply in one conversation at most: a client cannot fill the database through one. */
export const MAX_WAITING_UPLOADS = 50;
/** An upload no reply took within this long is removed (with the next upload to its conversation). */
export const UPLOAD_KEPT_DAYS = 7;
// An upload still incomplete after this long was cut off (the client or the API went away): removed likewise.
const INCOMPLETE_KEPT_MINUTES = 60;
// Written in pieces of this size: memory per upload stays this, whatever the file weighs.
const PIECE_BYTES = 256 * 1024;
// What a multipart body carries besides the file (boundaries, part headers), allowed on top of the limit.
const MULTIPART_OVERHEAD_BYTES = 64 * 1024;
// What a served attachment may name as its type: a plain type/subtype, else bytes.
const CONTENT_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/i;

const UploadSchema = z
  .object({
    id: z.uuid().openapi({ description: 'Name it in a reply: attachmentIds' }),
    filename: z.string().openapi({ description: 'As it will be sent: without a path, control or direction characters' }),
    contentType: z.string(),
    sizeBytes: z.number().int(),
  })
  .openapi('ReplyAttachmentUpload');

const uploadRoute = createRoute({
  method: 'post',
  path: '/v1/conversations/{conversationId}/attachments',
  operationId: 'uploadReplyAttachment',
  tags: ['Conversations'],
  summary: 'Upload a file to attach to a reply in this conversation',
  description:
    'multipart/form-data with one part named `file` (its filename and Content-Type are kept, the name cleaned of paths, ' +
    "control and direction characters). Streamed to storage. Over the channel's limits.maxAttachmentBytes: 413 naming the " +
    'limit, nothing kept. A reply names the upload in attachmentIds; once sent it is shown on the reply and cannot be sent again. ' +
    `At most ${MAX_WAITING_UPLOADS} uploads wait for a reply in a conversation (409 beyond), each for ${UPLOAD_KEPT_DAYS} days.`,
  security: [{ apiKey: [] }],
  request: {
    params: z.object({ conversationId: z.uuid() }),
    body: {
      required: true,
      content: {
        'multipart/form-data': {
          schema: {
            type: 'object' as const,
            properties: { file: { type: 'string' as const, format: 'binary' } },
            required: ['file'],
          },
        },
      },
    },
  },
  responses: {
    201: { description: 'Stored; name it in a reply', content: { 'application/json': { schema: UploadSchema } } },
    ...problemResponses(400, 401, 403, 404, 409, 413, 415, 422),
  },
});

/** The conversation as the caller may attach to it (see findConversation), with its channel's file limit. */
async function conversationToAttachTo(db: Db, user: AuthenticatedUser, conversationId: string) {
  const conversation = await findConversation(db, user, conversationId);
  const { max_attachment_bytes } = await db
    .selectFrom('channels')
    .select('max_attachment_bytes')
    .where('id', '=', conversation.channel_id)
    .executeTakeFirstOrThrow();
  return { id: conversation.id, channel_id: conversation.channel_id, max_attachment_bytes };
}

interface StoredUpload {
  id: string;
  filename: string;
  contentType: string;
  sizeBytes: number;
}

/** Streams the one `file` part into a row, piece by piece; the row becomes usable only once the file is whole. */
function storeUpload(
  db: Db,
  body: WebReadableStream<Uint8Array>,
  contentType: string,
  target: { conversationId: string; userId: string; maxBytes: number },
): Promise<StoredUpload> {
  const tooLarge = () =>
    new Problem(
      413,
      'too-large',
      'Attachment too large',
      `the channel's limit for one attachment (limits.maxAttachmentBytes) is ${target.maxBytes} bytes; nothing was kept`,
    );
  return new Promise<StoredUpload>((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: { 'content-type': contentType },
        defParamCharset: 'utf8',
        limits: { files: 1, fileSize: target.maxBytes, fields: 10, fieldSize: 1024, parts: 11, headerPairs: 20 },
      });
    } catch (error) {
      reject(new Problem(400, 'bad-multipart', 'Malformed multipart body', (error as Error).message));
      return;
    }
    let stored: Promise<StoredUpload> | undefined;
    let failed: unknown;
    const fail = (error: unknown) => {
      failed ??= error;
    };
    const source = Readable.fromWeb(body);
    // Over the limit: the rest of the body is not read at all, the partial file is removed, 413.
    let overLimit = false;
    const stopReading = () => {
      if (overLimit) return;
      overLimit = true;
      fail(tooLarge());
      source.unpipe(parser);
      source.destroy();
      if (stored)
        void stored.then(
          () => reject(failed),
          () => reject(failed),
        );
      else reject(failed);
    };
    parser.on('file', (field, file, info) => {
      if (field !== 'file' || stored) {
        file.resume();
        return;
      }
      file.on('limit', () => {
        stopReading();
        file.destroy();
      });
      stored = (async () => {
        const id = randomUUID();
        const filename = sanitizeFilename(info.filename);
        const type = CONTENT_TYPE.test(info.mimeType) ? info.mimeType.toLowerCase() : 'application/octet-stream';
        await db
          .insertInto('reply_attachments')
          .values({
            id,
            conversation_id: target.conversationId,
            uploaded_by: target.userId,
            filename,
            content_type: type,
            size_bytes: 0,
            sha256: null,
            content: new Uint8Array(0),
          })
          .execute();
        const hash = createHash('sha256');
        let size = 0;
        let pieces: Buffer[] = [];
        let pending = 0;
        const flush = async () => {
          if (pending === 0) return;
          const piece = Buffer.concat(pieces, pending);
          pieces = [];
          pending = 0;
          await db
            .updateTable('reply_attachments')
            .set({ content: sql<Uint8Array>`content || ${piece}`, size_bytes: sql<number>`size_bytes + ${piece.length}` })
            .where('id', '=', id)
            .execute();
        };
        try {
          for await (const chunk of file as AsyncIterable<Buffer>) {
            hash.update(chunk);
            size += chunk.length;
            pieces.push(chunk);
            pending += chunk.length;
            if (pending >= PIECE_BYTES) await flush();
          }
          if (file.truncated || overLimit) throw tooLarge();
          await flush();
          await db
            .updateTable('reply_attachments')
            .set({ complete: true, sha256: hash.digest('hex') })
            .where('id', '=', id)
            .execute();
          return { id, filename, contentType: type, sizeBytes: size };
        } catch (error) {
          await db.deleteFrom('reply_attachments').where('id', '=', id).execute();
          throw error;
        }
      })();
      stored.catch(fail);
    });
    parser.on('error', (error: Error) => {
      fail(new Problem(400, 'bad-multipart', 'Malformed multipart body', error.message));
    });
    parser.on('close', () => {
      if (overLimit) return;
      if (!stored) {
        reject(
          failed ??
            new Problem(422, 'validation', 'Request validation failed', 'no file', [
              { field: 'file', message: 'the body has no part named "file" with a filename' },
            ]),
        );
        return;
      }
      stored.then(resolve, (error: unknown) => reject(failed ?? error));
    });
    let read = 0;
    source.on('data', (chunk: Buffer) => {
      read += chunk.length;
      // Parts beside the file are not stored, but their bytes count too.
      if (read > target.maxBytes + MULTIPART_OVERHEAD_BYTES) stopReading();
    });
    source.on('error', (error) => {
      if (overLimit) return;
      fail(error);
      parser.destroy(error);
    });
    source.pipe(parser);
  });
}

export function replyAttachmentRoutes({ db }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();
  return app.openapi(uploadRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const user = c.get('user');
    const conversation = await conversationToAttachTo(db, user, conversationId);
    const contentType = c.req.header('content-type') ?? '';
    if (!contentType.toLowerCase().startsWith('multipart/form-data')) {
      throw new Problem(415, 'unsupported-media-type', 'Unsupported media type', 'upload the file as multipart/form-data');
    }
    const maxBytes = conversation.max_attachment_bytes;
    const declared = Number(c.req.header('content-length') ?? Number.NaN);
    if (declared > maxBytes + MULTIPART_OVERHEAD_BYTES) {
      throw new Problem(
        413,
        'too-large',
        'Attachment too large',
        `the channel's limit for one attachment (limits.maxAttachmentBytes) is ${maxBytes} bytes; nothing was kept`,
      );
    }
    await db
      .deleteFrom('reply_attachments')
      .where('conversation_id', '=', conversationId)
      .where('outbound_message_id', 'is', null)
      .where((eb) =>
        eb.or([
          eb('created_at', '<', sql<Date>`now() - make_interval(days => ${UPLOAD_KEPT_DAYS})`),
          eb.and([
            eb('complete', '=', false),
            eb('created_at', '<', sql<Date>`now() - make_interval(mins => ${INCOMPLETE_KEPT_MINUTES})`),
          ]),
        ]),
      )
      .execute();
    const waiting = await db
      .selectFrom('reply_attachments')
      .select((eb) => eb.fn.countAll<string>().as('count'))
      .where('conversation_id', '=', conversationId)
      .where('outbound_message_id', 'is', null)
      .executeTakeFirstOrThrow();
    if (Number(waiting.count) >= MAX_WAITING_UPLOADS) {
      throw new Problem(
        409,
        'too-many-uploads',
        'Too many uploads waiting',
        `at most ${MAX_WAITING_UPLOADS} uploads wait for a reply in a conversation; send a reply with them first`,
      );
    }
    const body = c.req.raw.body;
    if (!body) throw new Problem(400, 'empty', 'Empty body', 'the body is empty');
    const stored = await storeUpload(db, body as WebReadableStream<Uint8Array>, contentType, {
      conversationId,
      userId: user.id,
      maxBytes,
    });
    return c.json(stored, 201);
  });
}
