import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Selectable } from 'kysely';
import type { ForwardingConfirmationsTable } from '../../db/schema.js';
import { findChannel } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { afterCursor, decodeCursor, PageQuerySchema, pageSchema, toPage } from '../pagination.js';
import { problemResponses } from '../problem.js';

// Confirmations a mail provider sent to the channel's forwarding address before it forwards (Gmail's code and
// link): the admin who set up the forward confirms it with them. They never become conversations.

const ForwardingConfirmationSchema = z
  .object({
    id: z.uuid(),
    channelId: z.uuid(),
    provider: z.string().openapi({ example: 'gmail' }),
    sender: z.string().openapi({ example: 'forwarding-noreply@google.com' }),
    subject: z.string(),
    requestedBy: z
      .string()
      .nullable()
      .openapi({ description: 'The mailbox that asks to forward here', example: 'ann@gmail.com' }),
    confirmationCode: z.string().nullable().openapi({ example: '123456789' }),
    confirmationUrl: z
      .string()
      .nullable()
      .openapi({ description: "Opening it confirms the forward; only ever a link to the provider's own settings host" }),
    inboundMessageId: z.uuid().openapi({ description: 'The mail as received, under /v1/inbound-messages' }),
    receivedAt: z.iso.datetime(),
  })
  .openapi('ForwardingConfirmation');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/forwarding-confirmations',
  operationId: 'listForwardingConfirmations',
  tags: ['Channels'],
  summary: "Forwarding confirmations sent to the channel's forwarding address, newest first (admins)",
  description:
    'Gmail sends one (from forwarding-noreply@google.com, with a code and a link) before it forwards a mailbox to the ' +
    'forwarding address: open the link or enter the code in Gmail. Such a mail is never a conversation and never answered.',
  security: [{ apiKey: [] }],
  request: { params: z.object({ channelId: z.uuid() }), query: PageQuerySchema },
  responses: {
    200: {
      description: 'Forwarding confirmations',
      content: { 'application/json': { schema: pageSchema(ForwardingConfirmationSchema, 'ForwardingConfirmationPage') } },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

function toConfirmation(row: Selectable<ForwardingConfirmationsTable>): z.infer<typeof ForwardingConfirmationSchema> {
  return {
    id: row.id,
    channelId: row.channel_id,
    provider: row.provider,
    sender: row.sender,
    subject: row.subject,
    requestedBy: row.requested_by,
    confirmationCode: row.confirmation_code,
    confirmationUrl: row.confirmation_url,
    inboundMessageId: row.inbound_message_id,
    receivedAt: row.created_at.toISOString(),
  };
}

export function forwardingConfirmationRoutes({ db }: ApiDeps) {
  return new OpenAPIHono<AppEnv>().openapi(listRoute, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'configure');
    const { cursor, limit } = c.req.valid('query');
    const cursorId = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await db
      .selectFrom('forwarding_confirmations as f')
      .selectAll('f')
      .where('f.channel_id', '=', channel.id)
      .$if(cursorId !== undefined, (q) => q.where(afterCursor('forwarding_confirmations', 'f', cursorId!)))
      .orderBy('f.created_at', 'desc')
      .orderBy('f.id', 'desc')
      .limit(limit + 1)
      .execute();
    return c.json(toPage(rows, limit, toConfirmation), 200);
  });
}
