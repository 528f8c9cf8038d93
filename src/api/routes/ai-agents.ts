import { randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import type { Db } from '../../db/connection.js';
import { findChannel } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { IdempotencyHeadersSchema } from '../idempotency.js';
import { endPosition, lockChannel, placeAt, reorder } from '../ordering.js';
import { Problem, problemResponses } from '../problem.js';

// A channel's AI agents. The first enabled one by position takes the conversations no routing rule
// sends elsewhere; the workflow reads them when it routes, so changes apply to the next conversation.

const security = [{ apiKey: [] }];
const tags = ['AI agents'];
const channelParams = z.object({ channelId: z.uuid() });
const aiAgentParams = z.object({ channelId: z.uuid(), aiAgentId: z.uuid() });

const ProviderSchema = z.enum(['knowledge_base', 'openai_compatible']).openapi({
  description:
    'knowledge_base answers offline from the channel’s knowledge articles; openai_compatible asks the model at AI_BASE_URL',
});
const nameSchema = z.string().trim().min(1).max(120);
const modelSchema = z
  .string()
  .trim()
  .min(1)
  .max(200)
  .nullable()
  .openapi({ description: 'Overrides AI_MODEL for an openai_compatible provider; null uses AI_MODEL' });

const AiAgentSchema = z
  .object({
    id: z.uuid(),
    channelId: z.uuid(),
    name: z.string(),
    provider: ProviderSchema,
    model: z.string().nullable(),
    enabled: z.boolean(),
    position: z.number().int().openapi({ description: '0 is first: the first enabled AI agent takes conversations' }),
    createdAt: z.iso.datetime(),
  })
  .openapi('AiAgent');

const AiAgentListSchema = z.object({ data: z.array(AiAgentSchema) }).openapi('AiAgentList');

const AiAgentInput = z
  .object({
    name: nameSchema,
    provider: ProviderSchema,
    model: modelSchema.optional(),
    enabled: z.boolean().default(true),
    position: z
      .number()
      .int()
      .min(0)
      .optional()
      .openapi({ description: 'Insert at this index (0 = first); omitted or beyond the end: last' }),
  })
  .openapi('AiAgentInput');

// Strict, and at least one field: an unknown field (a typo) or an empty body is a 422, not a 200 that changes nothing.
const aiAgentUpdateFields = {
  name: nameSchema.optional(),
  provider: ProviderSchema.optional(),
  model: modelSchema.optional(),
  enabled: z.boolean().optional().openapi({ description: 'A disabled AI agent takes no new conversations' }),
};
const AiAgentUpdate = z
  .strictObject(aiAgentUpdateFields)
  .refine((update) => Object.keys(update).length > 0, `send at least one of: ${Object.keys(aiAgentUpdateFields).join(', ')}`)
  .openapi('AiAgentUpdate', { minProperties: 1 });

const OrderInput = z
  .object({
    ids: z.array(z.uuid()).max(1000).openapi({ description: 'Every AI agent of the channel, each once, first first' }),
  })
  .openapi('AiAgentOrder');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/ai-agents',
  operationId: 'listAiAgents',
  tags,
  summary: "The channel's AI agents in order",
  security,
  request: { params: channelParams },
  responses: {
    200: { description: 'AI agents, first first', content: { 'application/json': { schema: AiAgentListSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

const createAiAgentRoute = createRoute({
  method: 'post',
  path: '/v1/channels/{channelId}/ai-agents',
  operationId: 'createAiAgent',
  tags,
  summary: 'Add an AI agent to the channel (admins)',
  security,
  request: {
    params: channelParams,
    headers: IdempotencyHeadersSchema,
    body: { required: true, content: { 'application/json': { schema: AiAgentInput } } },
  },
  responses: {
    201: { description: 'Created', content: { 'application/json': { schema: AiAgentSchema } } },
    ...problemResponses(400, 401, 403, 404, 413, 422),
  },
});

const orderRoute = createRoute({
  method: 'put',
  path: '/v1/channels/{channelId}/ai-agents/order',
  operationId: 'reorderAiAgents',
  tags,
  summary: 'Put the channel’s AI agents in a new order (admins)',
  description: 'The first enabled AI agent in this order takes the next conversation that no routing rule sends elsewhere.',
  security,
  request: {
    params: channelParams,
    body: { required: true, content: { 'application/json': { schema: OrderInput } } },
  },
  responses: {
    200: { description: 'AI agents in the new order', content: { 'application/json': { schema: AiAgentListSchema } } },
    ...problemResponses(400, 401, 403, 404, 413, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/ai-agents/{aiAgentId}',
  operationId: 'getAiAgent',
  tags,
  summary: 'One AI agent of the channel',
  security,
  request: { params: aiAgentParams },
  responses: {
    200: { description: 'The AI agent', content: { 'application/json': { schema: AiAgentSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

const patchRoute = createRoute({
  method: 'patch',
  path: '/v1/channels/{channelId}/ai-agents/{aiAgentId}',
  operationId: 'updateAiAgent',
  tags,
  summary: 'Rename, enable or disable an AI agent, or change its provider or model (admins)',
  description: 'Disabling it sends new conversations to the next enabled AI agent, or to people; it finishes the ones it has.',
  security,
  request: {
    params: aiAgentParams,
    body: { required: true, content: { 'application/json': { schema: AiAgentUpdate } } },
  },
  responses: {
    200: { description: 'The AI agent', content: { 'application/json': { schema: AiAgentSchema } } },
    ...problemResponses(400, 401, 403, 404, 413, 422),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/channels/{channelId}/ai-agents/{aiAgentId}',
  operationId: 'deleteAiAgent',
  tags,
  summary: 'Remove an AI agent (admins)',
  description:
    'Conversations it handled before keep their messages and timeline; their aiAgentId becomes null. ' +
    'While routing rules assign to it, or it still handles conversations (answering, or resolved by it and ' +
    'not yet closed, since the customer may write again), the answer is 409 naming them: disable it ' +
    '(PATCH enabled=false) so that it takes no new ones, change those rules, assign its conversations to people, and repeat.',
  security,
  request: { params: aiAgentParams },
  responses: {
    204: { description: 'Removed' },
    ...problemResponses(401, 403, 404, 409, 422),
  },
});

const aiAgentColumns = ['id', 'channel_id', 'name', 'provider', 'model', 'enabled', 'position', 'created_at'] as const;

type AiAgentRow = {
  id: string;
  channel_id: string;
  name: string;
  provider: 'knowledge_base' | 'openai_compatible';
  model: string | null;
  enabled: boolean;
  position: number;
  created_at: Date;
};

function toAiAgent(row: AiAgentRow): z.infer<typeof AiAgentSchema> {
  return {
    id: row.id,
    channelId: row.channel_id,
    name: row.name,
    provider: row.provider,
    model: row.model,
    enabled: row.enabled,
    position: row.position,
    createdAt: row.created_at.toISOString(),
  };
}

/** How many items a 409 names before it says "and n more". */
const NAMED_IN_CONFLICT = 5;

function listed(items: string[]): string {
  const shown = items.slice(0, NAMED_IN_CONFLICT).join(', ');
  return items.length > NAMED_IN_CONFLICT ? `${shown} and ${items.length - NAMED_IN_CONFLICT} more` : shown;
}

export function aiAgentRoutes({ db }: ApiDeps) {
  async function list(trx: Db, channelId: string) {
    const rows = await trx
      .selectFrom('ai_agents')
      .select(aiAgentColumns)
      .where('channel_id', '=', channelId)
      .orderBy('position')
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toAiAgent);
  }

  async function findAiAgent(trx: Db, channelId: string, aiAgentId: string) {
    const row = await trx
      .selectFrom('ai_agents')
      .select(aiAgentColumns)
      .where('channel_id', '=', channelId)
      .where('id', '=', aiAgentId)
      .executeTakeFirst();
    if (!row) throw new Problem(404, 'not-found', 'AI agent not found', `channel ${channelId} has no AI agent ${aiAgentId}`);
    return row;
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(listRoute, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'work');
    return c.json({ data: await list(db, channel.id) }, 200);
  });

  app.openapi(createAiAgentRoute, async (c) => {
    const input = c.req.valid('json');
    const created = await db.transaction().execute(async (trx) => {
      const channel = await findChannel(trx, c.get('user'), c.req.valid('param').channelId, 'configure');
      await lockChannel(trx, channel.id);
      const id = randomUUID();
      await trx
        .insertInto('ai_agents')
        .values({
          id,
          channel_id: channel.id,
          name: input.name,
          provider: input.provider,
          model: input.model ?? null,
          enabled: input.enabled,
          // Last for now, then moved to where it was asked for.
          position: await endPosition(trx, 'ai_agents', channel.id),
        })
        .execute();
      await placeAt(trx, 'ai_agents', channel.id, id, input.position);
      return findAiAgent(trx, channel.id, id);
    });
    return c.json(toAiAgent(created), 201);
  });

  // Before the {aiAgentId} routes: "order" is no AI agent id.
  app.openapi(orderRoute, async (c) => {
    const { ids } = c.req.valid('json');
    const ordered = await db.transaction().execute(async (trx) => {
      const channel = await findChannel(trx, c.get('user'), c.req.valid('param').channelId, 'configure');
      await lockChannel(trx, channel.id);
      await reorder(trx, 'ai_agents', channel.id, ids, 'AI agents');
      return list(trx, channel.id);
    });
    return c.json({ data: ordered }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const { channelId, aiAgentId } = c.req.valid('param');
    const channel = await findChannel(db, c.get('user'), channelId, 'work');
    return c.json(toAiAgent(await findAiAgent(db, channel.id, aiAgentId)), 200);
  });

  app.openapi(patchRoute, async (c) => {
    const { channelId, aiAgentId } = c.req.valid('param');
    const input = c.req.valid('json');
    const updated = await db.transaction().execute(async (trx) => {
      const channel = await findChannel(trx, c.get('user'), channelId, 'configure');
      const current = await findAiAgent(trx, channel.id, aiAgentId);
      const changes = {
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.provider !== undefined ? { provider: input.provider } : {}),
        ...(input.model !== undefined ? { model: input.model } : {}),
        ...(input.enabled !== undefined ? { enabled: input.enabled } : {}),
      };
      if (Object.keys(changes).length === 0) return current;
      return trx
        .updateTable('ai_agents')
        .set(changes)
        .where('id', '=', current.id)
        .returning(aiAgentColumns)
        .executeTakeFirstOrThrow();
    });
    return c.json(toAiAgent(updated), 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const { channelId, aiAgentId } = c.req.valid('param');
    await db.transaction().execute(async (trx) => {
      const channel = await findChannel(trx, c.get('user'), channelId, 'configure');
      await lockChannel(trx, channel.id);
      const aiAgent = await findAiAgent(trx, channel.id, aiAgentId);
      // Routing hands it conversations under a key-share lock on this row: wait for those, then count them.
      await trx.selectFrom('ai_agents').select('id').where('id', '=', aiAgent.id).forUpdate().execute();

      const rules = await trx
        .selectFrom('routing_rules')
        .select(['id', 'name'])
        .where('channel_id', '=', channel.id)
        .where(sql<string>`actions->'assignTo'->>'aiAgentId'`, '=', aiAgent.id)
        .orderBy('position')
        .execute();
      if (rules.length > 0) {
        throw new Problem(
          409,
          'conflict',
          'The AI agent is used by routing rules',
          `routing rule(s) ${listed(rules.map((rule) => `"${rule.name}" (${rule.id})`))} assign to ${aiAgent.name}: ` +
            'change or delete them first',
        );
      }

      // Its own: not taken over by a person (assignee) and not escalated. Their workflow would ask it again.
      const handled = await trx
        .selectFrom('conversations as c')
        .select('c.id')
        .where('c.ai_agent_id', '=', aiAgent.id)
        .where('c.status', '!=', 'closed')
        .where('c.assignee_id', 'is', null)
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom('conversation_events as e')
                .select('e.id')
                .whereRef('e.conversation_id', '=', 'c.id')
                .where('e.type', '=', 'escalated'),
            ),
          ),
        )
        .orderBy('c.created_at')
        .execute();
      if (handled.length > 0) {
        throw new Problem(
          409,
          'conflict',
          'The AI agent still handles conversations',
          `${aiAgent.name} still handles ${handled.length} conversation(s) (${listed(handled.map((row) => row.id))}): ` +
            `disable it (PATCH enabled=false) so that it takes no new ones, assign those to people or wait until they close, then repeat`,
        );
      }
      // Past conversations, messages and surveys keep their history; their ai_agent_id becomes null (on delete set null).
      await trx.deleteFrom('ai_agents').where('id', '=', aiAgent.id).execute();
      await placeAt(trx, 'ai_agents', channel.id, null);
    });
    return c.body(null, 204);
  });

  return app;
}
