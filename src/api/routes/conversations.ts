import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { conversationWorkflowId } from '../../workflows/ids.js';
import { agentReplyUpdate, assignUpdate, resolveUpdate } from '../../workflows/messages.js';
import type { Db } from '../../db/connection.js';
import { PRIORITIES } from '../../domain/routing-rules.js';
import type { ApiDeps, AppEnv, AuthenticatedUser } from '../env.js';
import { Problem, problemResponses } from '../problem.js';
import { commandConversation } from '../workflow-commands.js';

const StageSchema = z.enum(['triage', 'ai', 'waiting_for_hours', 'queued', 'assigned', 'resolved', 'csat', 'closed']);
const StatusSchema = z.enum(['open', 'resolved', 'closed']);

const ConversationSchema = z
  .object({
    id: z.uuid(),
    channelId: z.uuid(),
    contact: z.object({ id: z.uuid(), email: z.string().nullable(), name: z.string().nullable() }),
    subject: z.string(),
    status: StatusSchema,
    stage: StageSchema,
    assigneeId: z.uuid().nullable(),
    aiAgentId: z.uuid().nullable(),
    teamId: z.uuid().nullable(),
    priority: z.enum(PRIORITIES),
    labels: z.array(z.string()),
    sla: z.object({
      dueAt: z.iso.datetime().nullable().openapi({ description: 'First response due by (counted in business time)' }),
      breachedAt: z.iso.datetime().nullable(),
      firstResponseAt: z.iso.datetime().nullable(),
    }),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
    resolvedAt: z.iso.datetime().nullable(),
  })
  .openapi('Conversation');

const MessageSchema = z
  .object({
    id: z.uuid(),
    direction: z.enum(['inbound', 'outbound']),
    kind: z.enum(['customer', 'greeting', 'reply', 'csat_survey', 'out_of_office', 'ai_reply', 'handover']),
    messageId: z.string(),
    from: z.string().nullable(),
    to: z.string().nullable(),
    subject: z.string().nullable(),
    text: z.string().nullable(),
    classification: z.enum(['ordinary', 'auto_reply', 'bounce']).nullable(),
    authorId: z.uuid().nullable(),
    aiAgentId: z.uuid().nullable(),
    at: z.iso.datetime(),
    sentAt: z.iso.datetime().nullable(),
  })
  .openapi('Message');

const EventSchema = z
  .object({ type: z.string(), data: z.record(z.string(), z.unknown()), at: z.iso.datetime() })
  .openapi('TimelineEvent');

const ConversationDetailSchema = ConversationSchema.extend({
  messages: z.array(MessageSchema),
  timeline: z.array(EventSchema),
}).openapi('ConversationDetail');

const idParams = z.object({ conversationId: z.uuid() });
const security = [{ apiKey: [] }];

const listRoute = createRoute({
  method: 'get',
  path: '/v1/conversations',
  tags: ['Conversations'],
  summary: 'List conversations, newest first',
  security,
  request: {
    query: z.object({
      status: StatusSchema.optional(),
      channelId: z.uuid().optional(),
      limit: z.coerce.number().int().min(1).max(100).default(50),
    }),
  },
  responses: {
    200: {
      description: 'Conversations',
      content: { 'application/json': { schema: z.object({ data: z.array(ConversationSchema) }) } },
    },
    ...problemResponses(401, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/conversations/{conversationId}',
  tags: ['Conversations'],
  summary: 'One conversation with its messages and timeline',
  security,
  request: { params: idParams },
  responses: {
    200: { description: 'The conversation', content: { 'application/json': { schema: ConversationDetailSchema } } },
    ...problemResponses(401, 404, 422),
  },
});

const replyRoute = createRoute({
  method: 'post',
  path: '/v1/conversations/{conversationId}/replies',
  tags: ['Conversations'],
  summary: 'Reply to the customer as the calling agent',
  description: 'The reply is mailed threaded into the conversation (In-Reply-To, References) with a stable Message-ID.',
  security,
  request: {
    params: idParams,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z.object({
            text: z.string().trim().min(1, 'the reply text is empty').max(100_000),
            subject: z
              .string()
              .trim()
              .min(1)
              .max(998)
              .optional()
              .openapi({ description: 'Defaults to "Re: <conversation subject>"' }),
          }),
        },
      },
    },
  },
  responses: {
    201: {
      description: 'Sent',
      content: {
        'application/json': { schema: z.object({ outboundMessageId: z.uuid(), messageId: z.string() }).openapi('SentReply') },
      },
    },
    ...problemResponses(401, 404, 409, 422, 503),
  },
});

const resolveRoute = createRoute({
  method: 'post',
  path: '/v1/conversations/{conversationId}/resolve',
  tags: ['Conversations'],
  summary: 'Resolve the conversation; the CSAT survey follows when the channel has it on',
  security,
  request: { params: idParams },
  responses: {
    200: { description: 'Resolved', content: { 'application/json': { schema: z.object({ status: StatusSchema }) } } },
    ...problemResponses(401, 404, 409, 422, 503),
  },
});

function conversationQuery(db: Db, user: AuthenticatedUser) {
  return db
    .selectFrom('conversations as c')
    .innerJoin('contacts as ct', 'ct.id', 'c.contact_id')
    .select([
      'c.id',
      'c.channel_id',
      'c.subject',
      'c.status',
      'c.stage',
      'c.assignee_id',
      'c.ai_agent_id',
      'c.team_id',
      'c.priority',
      'c.labels',
      'c.sla_due_at',
      'c.sla_breached_at',
      'c.first_response_at',
      'c.created_at',
      'c.updated_at',
      'c.resolved_at',
      'ct.id as contact_id',
      'ct.email as contact_email',
      'ct.name as contact_name',
    ])
    .where('c.account_id', '=', user.accountId);
}

type ConversationRow = Awaited<ReturnType<ReturnType<typeof conversationQuery>['executeTakeFirstOrThrow']>>;

function toConversation(row: ConversationRow): z.infer<typeof ConversationSchema> {
  return {
    id: row.id,
    channelId: row.channel_id,
    contact: { id: row.contact_id, email: row.contact_email, name: row.contact_name },
    subject: row.subject,
    status: row.status,
    stage: row.stage,
    assigneeId: row.assignee_id,
    aiAgentId: row.ai_agent_id,
    teamId: row.team_id,
    priority: row.priority,
    labels: row.labels,
    sla: {
      dueAt: row.sla_due_at?.toISOString() ?? null,
      breachedAt: row.sla_breached_at?.toISOString() ?? null,
      firstResponseAt: row.first_response_at?.toISOString() ?? null,
    },
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    resolvedAt: row.resolved_at?.toISOString() ?? null,
  };
}

const assignmentRoute = createRoute({
  method: 'put',
  path: '/v1/conversations/{conversationId}/assignment',
  tags: ['Conversations'],
  summary: 'Assign the conversation to an agent of its channel, or unassign it (assigneeId null)',
  description:
    'Assigning by hand ignores capacity. Unassigning puts the conversation back into the queue, where the ' +
    "channel's strategy gives it to another agent with free capacity.",
  security,
  request: {
    params: idParams,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z.object({ assigneeId: z.uuid().nullable() }).openapi('AssignmentInput'),
        },
      },
    },
  },
  responses: {
    200: {
      description: 'Who has it now (null: waiting in the queue)',
      content: { 'application/json': { schema: z.object({ assigneeId: z.uuid().nullable() }).openapi('Assignment') } },
    },
    ...problemResponses(401, 404, 409, 422, 503),
  },
});

export function conversationRoutes({ db, temporal }: ApiDeps) {
  async function findConversation(user: AuthenticatedUser, conversationId: string): Promise<ConversationRow> {
    const row = await conversationQuery(db, user).where('c.id', '=', conversationId).executeTakeFirst();
    // Another account's conversation answers exactly like a missing one.
    if (!row) throw new Problem(404, 'not-found', 'Conversation not found', `no conversation ${conversationId}`);
    return row;
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(listRoute, async (c) => {
    const { status, channelId, limit } = c.req.valid('query');
    let query = conversationQuery(db, c.get('user')).orderBy('c.created_at', 'desc').limit(limit);
    if (status) query = query.where('c.status', '=', status);
    if (channelId) query = query.where('c.channel_id', '=', channelId);
    const rows = await query.execute();
    return c.json({ data: rows.map(toConversation) }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const conversation = await findConversation(c.get('user'), conversationId);
    const [inbound, outbound, events] = await Promise.all([
      db.selectFrom('inbound_messages').selectAll().where('conversation_id', '=', conversationId).execute(),
      db.selectFrom('outbound_messages').selectAll().where('conversation_id', '=', conversationId).execute(),
      db.selectFrom('conversation_events').selectAll().where('conversation_id', '=', conversationId).orderBy('id').execute(),
    ]);
    const messages: z.infer<typeof MessageSchema>[] = [
      ...inbound.map((m) => ({
        id: m.id,
        direction: 'inbound' as const,
        kind: 'customer' as const,
        messageId: m.message_id,
        from: m.from_address,
        to: null,
        subject: m.subject,
        text: m.text_body,
        classification: m.classification,
        authorId: null,
        aiAgentId: null,
        at: m.received_at.toISOString(),
        sentAt: m.sent_at?.toISOString() ?? null,
      })),
      ...outbound.map((m) => ({
        id: m.id,
        direction: 'outbound' as const,
        kind: m.kind,
        messageId: m.message_id,
        from: m.from_address,
        to: m.to_address,
        subject: m.subject,
        text: m.text_body,
        classification: null,
        authorId: m.author_id,
        aiAgentId: m.ai_agent_id,
        at: m.created_at.toISOString(),
        sentAt: m.sent_at?.toISOString() ?? null,
      })),
    ].sort((a, b) => a.at.localeCompare(b.at));
    const timeline = events.map((e) => ({ type: e.type, data: e.data, at: e.created_at.toISOString() }));
    return c.json({ ...toConversation(conversation), messages, timeline }, 200);
  });

  app.openapi(replyRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const { text, subject } = c.req.valid('json');
    const user = c.get('user');
    await findConversation(user, conversationId);
    const handle = temporal.workflow.getHandle(conversationWorkflowId(conversationId));
    const sent = await commandConversation(temporal, () =>
      handle.executeUpdate(agentReplyUpdate, {
        args: [{ author: { id: user.id, name: user.name }, text, ...(subject ? { subject } : {}) }],
      }),
    );
    return c.json(sent, 201);
  });

  app.openapi(resolveRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const user = c.get('user');
    await findConversation(user, conversationId);
    const handle = temporal.workflow.getHandle(conversationWorkflowId(conversationId));
    const result = await commandConversation(temporal, () =>
      handle.executeUpdate(resolveUpdate, { args: [{ resolvedBy: { id: user.id, name: user.name } }] }),
    );
    return c.json(result, 200);
  });

  app.openapi(assignmentRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const { assigneeId } = c.req.valid('json');
    const user = c.get('user');
    const conversation = await findConversation(user, conversationId);
    let assignee = null;
    if (assigneeId) {
      const agent = await db
        .selectFrom('channel_agents as ca')
        .innerJoin('users as u', 'u.id', 'ca.user_id')
        .select(['u.id', 'u.name'])
        .where('ca.channel_id', '=', conversation.channel_id)
        .where('u.id', '=', assigneeId)
        .executeTakeFirst();
      if (!agent) {
        throw new Problem(422, 'validation', 'Request validation failed', 'the assignee is not an agent of this channel', [
          { field: 'assigneeId', message: `user ${assigneeId} is not an agent of this conversation's channel` },
        ]);
      }
      assignee = { id: agent.id, name: agent.name };
    }
    const handle = temporal.workflow.getHandle(conversationWorkflowId(conversationId));
    const result = await commandConversation(temporal, () =>
      handle.executeUpdate(assignUpdate, { args: [{ assignee, by: { id: user.id, name: user.name } }] }),
    );
    return c.json({ assigneeId: result.assignee?.id ?? null }, 200);
  });

  return app;
}
