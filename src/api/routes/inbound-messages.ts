import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { MailRejectedError, WorkflowsUnavailableError } from '../../ingest/ingest.js';
import { requireAdmin } from '../auth.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// Inbound mail as received, above all the quarantine: mail kept raw because it could not become
// a conversation (not MIME, no sender, too large), listed with its reason and reprocessable.

const security = [{ apiKey: [] }];

const InboundMessageSchema = z
  .object({
    id: z.uuid(),
    channelId: z.uuid(),
    messageId: z.string(),
    status: z.enum(['received', 'threaded', 'rejected']),
    reason: z.string().nullable(),
    receivedVia: z.enum(['forwarder', 'imap', 'form']),
    sizeBytes: z.number().int(),
    conversationId: z.uuid().nullable(),
    receivedAt: z.iso.datetime(),
  })
  .openapi('InboundMessage');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/inbound-messages',
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

const reprocessRoute = createRoute({
  method: 'post',
  path: '/v1/inbound-messages/{inboundMessageId}/reprocess',
  tags: ['Inbound mail'],
  summary: 'Run a quarantined mail through the ingest again (after raising a limit, or after a fix)',
  security,
  request: { params: z.object({ inboundMessageId: z.uuid() }) },
  responses: {
    200: {
      description: 'It is now part of a conversation',
      content: { 'application/json': { schema: z.object({ conversationId: z.uuid(), inboundMessageId: z.uuid() }) } },
    },
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

export function inboundMessageRoutes({ db, ingest }: ApiDeps) {
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
        'm.conversation_id',
        'm.received_at',
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
          conversationId: m.conversation_id,
          receivedAt: m.received_at.toISOString(),
        })),
      },
      200,
    );
  });

  app.openapi(reprocessRoute, async (c) => {
    const user = c.get('user');
    requireAdmin(user, 'handles the quarantine');
    const { inboundMessageId } = c.req.valid('param');
    const found = await db
      .selectFrom('inbound_messages as m')
      .innerJoin('channels as ch', 'ch.id', 'm.channel_id')
      .select(['m.status', 'm.raw', 'm.received_via', 'ch.id as channel_id'])
      .where('m.id', '=', inboundMessageId)
      .where('ch.account_id', '=', user.accountId)
      .executeTakeFirst();
    if (!found) throw new Problem(404, 'not-found', 'Inbound message not found', `no inbound message ${inboundMessageId}`);
    if (found.status !== 'rejected')
      throw new Problem(409, 'not-quarantined', 'Not in quarantine', `its status is ${found.status}`);
    if (!found.raw) {
      throw new Problem(409, 'not-downloaded', 'Not downloaded', 'the mail was quarantined by its size before it was downloaded');
    }
    await db
      .updateTable('inbound_messages')
      .set({ status: 'received', rejection_reason: null })
      .where('id', '=', inboundMessageId)
      .where('status', '=', 'rejected')
      .execute();
    const channel = await db.selectFrom('channels').selectAll().where('id', '=', found.channel_id).executeTakeFirstOrThrow();
    try {
      const result = await ingest.ingestRawMail(channel, Buffer.from(found.raw), { via: found.received_via });
      return c.json({ conversationId: result.conversationId, inboundMessageId: result.inboundMessageId }, 200);
    } catch (error) {
      if (error instanceof MailRejectedError) throw new Problem(409, 'still-rejected', 'Still cannot be processed', error.reason);
      if (error instanceof WorkflowsUnavailableError) {
        throw new Problem(
          503,
          'workflows-unavailable',
          'Workflows are unavailable',
          'the mail is parsed and kept; reprocess it again later',
        );
      }
      throw error;
    }
  });

  return app;
}
