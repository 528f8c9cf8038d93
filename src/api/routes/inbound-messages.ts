import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import type { Channel } from '../../db/schema.js';
import { INBOUND_SOURCES } from '../../domain/conversation.js';
import {
  MailNotResumableError,
  MailRejectedError,
  ParserBusyError,
  WorkflowsUnavailableError,
  type IngestResult,
} from '../../ingest/ingest.js';
import { requestQuarantinedMail } from '../../temporal/mailbox.js';
import { requireAdmin } from '../auth.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// Inbound mail as received, above all the quarantine: mail kept raw because it could not become
// a conversation (not MIME, no sender, too large), listed with its reason and reprocessable.
// IMAP mail over the size limit is quarantined without its bytes; reprocessing it asks the mailbox to fetch it.
// Mail stored but never handed to its conversation is finished by the mail reconciler; reprocessing does it at once.

const security = [{ apiKey: [] }];

const InboundMessageSchema = z
  .object({
    id: z.uuid(),
    channelId: z.uuid(),
    messageId: z.string(),
    status: z.enum(['received', 'threaded', 'rejected']),
    reason: z.string().nullable(),
    receivedVia: z.enum(INBOUND_SOURCES),
    sizeBytes: z.number().int(),
    downloaded: z.boolean().openapi({
      description: 'False for IMAP mail quarantined by its size before the download: reprocessing fetches it from the mailbox',
    }),
    conversationId: z.uuid().nullable(),
    receivedAt: z.iso.datetime(),
    signalledAt: z.iso
      .datetime()
      .nullable()
      .openapi({
        description:
          "When the mail was handed to its conversation's workflow; null while it was not (status received, or threaded while " +
          'Temporal was away): the mail reconciler finishes it within a minute, reprocessing at once',
      }),
  })
  .openapi('InboundMessage');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/inbound-messages',
  operationId: 'listInboundMessages',
  tags: ['Inbound mail'],
  summary: 'Inbound mail of the account, newest first; status=rejected lists the quarantine',
  security,
  request: {
    query: z.object({
      status: z.enum(['received', 'threaded', 'rejected']).optional(),
      channelId: z.uuid().optional(),
      limit: z.coerce.number().int().min(1).max(200).default(50),
    }),
  },
  responses: {
    200: {
      description: 'Inbound mail',
      content: { 'application/json': { schema: z.object({ data: z.array(InboundMessageSchema) }) } },
    },
    ...problemResponses(401, 403, 422),
  },
});

const DownloadRequestedSchema = z
  .object({
    inboundMessageId: z.uuid(),
    status: z.literal('received').openapi({ description: 'Until the mailbox has fetched it' }),
    folder: z.string(),
    uid: z.number().int(),
    message: z.string().openapi({ description: 'What happens next, in words' }),
  })
  .openapi('InboundMessageDownloadRequested');

const reprocessRoute = createRoute({
  method: 'post',
  path: '/v1/inbound-messages/{inboundMessageId}/reprocess',
  operationId: 'reprocessInboundMessage',
  tags: ['Inbound mail'],
  summary: 'Run a quarantined mail through the ingest again (after raising a limit, or after a fix), or finish a stalled one',
  description:
    'A mail kept with its bytes is ingested at once (200). An IMAP mail quarantined by its size before the download ' +
    "(downloaded: false) is marked for download and the channel's mailbox session is told (202): it fetches the mail " +
    'by its UID and ingests it; should the mail be gone from the folder, the folder renumbered or the mail still too large, ' +
    'it returns to the quarantine with that reason. Asking again while the download is pending asks the mailbox again. ' +
    'A mail that was stored but never handed to its conversation (status received, or threaded while Temporal was away, ' +
    'after a 503 nobody retried) is finished at once as the mail reconciler would finish it within a minute (200); ' +
    'a web-form submission that was never threaded is finished by repeating its request instead (409). ' +
    'Mail that reached its conversation answers 409; while Temporal is away, 503 (the mail stays stored).',
  security,
  request: { params: z.object({ inboundMessageId: z.uuid() }) },
  responses: {
    200: {
      description: 'It is now part of a conversation',
      content: { 'application/json': { schema: z.object({ conversationId: z.uuid(), inboundMessageId: z.uuid() }) } },
    },
    202: {
      description: "Marked for download: the channel's mailbox fetches it and ingests it",
      content: { 'application/json': { schema: DownloadRequestedSchema } },
    },
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

export function inboundMessageRoutes({ db, ingest, temporal, taskQueue }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();

  app.openapi(listRoute, async (c) => {
    const user = c.get('user');
    requireAdmin(user, 'handles the quarantine');
    const { status, channelId, limit } = c.req.valid('query');
    let query = db
      .selectFrom('inbound_messages as m')
      .innerJoin('channels as ch', 'ch.id', 'm.channel_id')
      .select([
        'm.id',
        'm.channel_id',
        'm.message_id',
        'm.status',
        'm.rejection_reason',
        'm.received_via',
        'm.size_bytes',
        sql<boolean>`m.raw is not null`.as('downloaded'),
        'm.conversation_id',
        'm.received_at',
        'm.signalled_at',
      ])
      .where('ch.account_id', '=', user.accountId)
      .orderBy('m.received_at', 'desc')
      .limit(limit);
    if (status) query = query.where('m.status', '=', status);
    if (channelId) query = query.where('m.channel_id', '=', channelId);
    const rows = await query.execute();
    return c.json(
      {
        data: rows.map((m) => ({
          id: m.id,
          channelId: m.channel_id,
          messageId: m.message_id,
          status: m.status,
          reason: m.rejection_reason,
          receivedVia: m.received_via,
          sizeBytes: m.size_bytes,
          downloaded: m.downloaded,
          conversationId: m.conversation_id,
          receivedAt: m.received_at.toISOString(),
          signalledAt: m.signalled_at?.toISOString() ?? null,
        })),
      },
      200,
    );
  });

  /**
   * Marks an IMAP mail quarantined without its bytes for download and tells the channel's mailbox workflow. The mark
   * is what counts: every mailbox session looks for marked mail, so a lost signal only delays the download.
   */
  async function requestDownload(
    inboundMessageId: string,
    mail: { size_bytes: number; source_folder: string | null; source_uid: string | null },
    channel: Channel,
  ) {
    if (mail.source_folder === null || mail.source_uid === null) {
      throw new Problem(
        409,
        'not-downloaded',
        'Not downloaded',
        'the mail was not downloaded and its place on the server is not known',
      );
    }
    if (mail.size_bytes > channel.max_inbound_bytes) {
      throw new Problem(
        409,
        'still-rejected',
        'Still cannot be processed',
        `too large: ${mail.size_bytes} bytes, the channel accepts ${channel.max_inbound_bytes}; raise the channel's limit first`,
      );
    }
    if (!channel.imap_enabled || !channel.enabled || channel.deleted_at) {
      throw new Problem(
        409,
        'mailbox-disabled',
        'The mailbox is not synced',
        "the mail is fetched by the channel's IMAP mailbox, which is switched off; switch it on, then reprocess again",
      );
    }
    await db
      .updateTable('inbound_messages')
      .set({ status: 'received', rejection_reason: null })
      .where('id', '=', inboundMessageId)
      .where('raw', 'is', null)
      .execute();
    await requestQuarantinedMail(temporal, channel, taskQueue);
    const uid = Number(mail.source_uid);
    return {
      inboundMessageId,
      status: 'received' as const,
      folder: mail.source_folder,
      uid,
      message: `The channel's mailbox downloads UID ${uid} from ${mail.source_folder} and ingests it; if it is gone or still too large, it returns to the quarantine with the reason.`,
    };
  }

  app.openapi(reprocessRoute, async (c) => {
    const user = c.get('user');
    requireAdmin(user, 'handles the quarantine');
    const { inboundMessageId } = c.req.valid('param');
    const found = await db
      .selectFrom('inbound_messages as m')
      .innerJoin('channels as ch', 'ch.id', 'm.channel_id')
      .select([
        'm.status',
        'm.raw',
        'm.signalled_at',
        'm.received_via',
        'm.size_bytes',
        'm.source_folder',
        'm.source_uid',
        'ch.id as channel_id',
      ])
      .where('m.id', '=', inboundMessageId)
      .where('ch.account_id', '=', user.accountId)
      .executeTakeFirst();
    if (!found) throw new Problem(404, 'not-found', 'Inbound message not found', `no inbound message ${inboundMessageId}`);
    // Stored, never handed to its conversation (a 503 nobody retried, a process that died): finished now.
    const stalled = (found.status === 'threaded' && !found.signalled_at) || (found.status === 'received' && found.raw !== null);
    if (stalled) {
      const result = await finishIngest(() => ingest.resumeStored(inboundMessageId));
      return c.json({ conversationId: result.conversationId, inboundMessageId: result.inboundMessageId }, 200);
    }
    // Pending download: asked again, the mailbox is told again.
    const downloadPending = found.status === 'received' && !found.raw;
    if (found.status !== 'rejected' && !downloadPending)
      throw new Problem(409, 'not-quarantined', 'Not in quarantine', `its status is ${found.status}`);
    if (!found.raw) {
      const channel = await db.selectFrom('channels').selectAll().where('id', '=', found.channel_id).executeTakeFirstOrThrow();
      return c.json(await requestDownload(inboundMessageId, found, channel), 202);
    }
    await db
      .updateTable('inbound_messages')
      .set({ status: 'received', rejection_reason: null })
      .where('id', '=', inboundMessageId)
      .where('status', '=', 'rejected')
      .execute();
    const channel = await db.selectFrom('channels').selectAll().where('id', '=', found.channel_id).executeTakeFirstOrThrow();
    const raw = Buffer.from(found.raw);
    const result = await finishIngest(() => ingest.ingestRawMail(channel, raw, { via: found.received_via }));
    return c.json({ conversationId: result.conversationId, inboundMessageId: result.inboundMessageId }, 200);
  });

  /** Runs the ingest for a reprocess, its failures as answers: the mail stays stored whatever happens. */
  async function finishIngest(run: () => Promise<IngestResult>): Promise<IngestResult> {
    try {
      return await run();
    } catch (error) {
      if (error instanceof MailRejectedError) throw new Problem(409, 'still-rejected', 'Still cannot be processed', error.reason);
      if (error instanceof MailNotResumableError)
        throw new Problem(409, 'not-resumable', 'Cannot be finished here', error.message);
      if (error instanceof ParserBusyError) {
        throw new Problem(503, 'busy', 'Too many mails at once', 'the mail is kept; reprocess it again in a moment');
      }
      if (error instanceof WorkflowsUnavailableError) {
        throw new Problem(
          503,
          'workflows-unavailable',
          'Workflows are unavailable',
          'the mail is kept; reprocess it again later, or leave it to the mail reconciler, which finishes it once Temporal is back',
        );
      }
      throw error;
    }
  }

  return app;
}
