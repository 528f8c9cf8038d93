import { randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Transaction } from 'kysely';
import type { Db } from '../../db/connection.js';
import type { Channel, Database } from '../../db/schema.js';
import {
  describeRule,
  routingActionsSchema,
  routingConditionSchema,
  routingRuleSchema,
  type RoutingActions,
  type RoutingCondition,
} from '../../domain/routing-rules.js';
import { findChannel } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { IdempotencyHeadersSchema } from '../idempotency.js';
import { endPosition, lockChannel, placeAt, reorder } from '../ordering.js';
import { Problem, problemResponses } from '../problem.js';

// A channel's routing rules, in order: the first whose conditions all match decides a new
// conversation's handler, priority and labels. Bodies are validated by the same schemas the
// evaluation uses; the workflow reads the rules when it routes, so changes apply to the next conversation.

const security = [{ apiKey: [] }];
const tags = ['Routing rules'];
const channelParams = z.object({ channelId: z.uuid() });
const ruleParams = z.object({ channelId: z.uuid(), ruleId: z.uuid() });

const positionSchema = z
  .number()
  .int()
  .min(0)
  .optional()
  .openapi({ description: 'Put the rule at this index (0 = evaluated first); omitted: last on create, unchanged on replace' });

const RoutingRuleInput = routingRuleSchema.extend({ position: positionSchema }).openapi('RoutingRuleInput', {
  description:
    'Conditions all must match. assignTo names an agent of the channel, a team of the account or an AI agent of the channel. ' +
    'The matches operator takes RE2 syntax (https://github.com/google/re2/wiki/Syntax), case-insensitive, matched in linear time; ' +
    'a rule’s patterns compile to at most 1,000 instructions together. A channel has at most 200 rules.',
});

const RoutingRuleSchema = z
  .object({
    id: z.uuid(),
    channelId: z.uuid(),
    position: z.number().int().openapi({ description: '0 is evaluated first' }),
    name: z.string(),
    conditions: z.array(routingConditionSchema),
    actions: routingActionsSchema,
    description: z.string().openapi({
      description: 'The rule in words, as the conversation timeline shows it',
      example: 'rule "VIP customers": contact plan is "enterprise" → assign to team, priority urgent',
    }),
    createdAt: z.iso.datetime(),
  })
  .openapi('RoutingRule');

const RoutingRuleListSchema = z.object({ data: z.array(RoutingRuleSchema) }).openapi('RoutingRuleList');

const OrderInput = z
  .object({
    ids: z
      .array(z.uuid())
      .max(1000)
      .openapi({ description: 'Every routing rule of the channel, each once, first evaluated first' }),
  })
  .openapi('RoutingRuleOrder');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/routing-rules',
  operationId: 'listRoutingRules',
  tags,
  summary: "The channel's routing rules in the order they are evaluated",
  security,
  request: { params: channelParams },
  responses: {
    200: {
      description: 'Routing rules, first evaluated first',
      content: { 'application/json': { schema: RoutingRuleListSchema } },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

const createRuleRoute = createRoute({
  method: 'post',
  path: '/v1/channels/{channelId}/routing-rules',
  operationId: 'createRoutingRule',
  tags,
  summary: 'Add a routing rule (admins)',
  security,
  request: {
    params: channelParams,
    headers: IdempotencyHeadersSchema,
    body: { required: true, content: { 'application/json': { schema: RoutingRuleInput } } },
  },
  responses: {
    201: { description: 'Created', content: { 'application/json': { schema: RoutingRuleSchema } } },
    ...problemResponses(400, 401, 403, 404, 409, 413, 422),
  },
});

const orderRoute = createRoute({
  method: 'put',
  path: '/v1/channels/{channelId}/routing-rules/order',
  operationId: 'reorderRoutingRules',
  tags,
  summary: 'Put the channel’s routing rules in a new evaluation order (admins)',
  description: 'The next conversation routed is evaluated in this order.',
  security,
  request: {
    params: channelParams,
    body: { required: true, content: { 'application/json': { schema: OrderInput } } },
  },
  responses: {
    200: { description: 'Routing rules in the new order', content: { 'application/json': { schema: RoutingRuleListSchema } } },
    ...problemResponses(400, 401, 403, 404, 413, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/routing-rules/{ruleId}',
  operationId: 'getRoutingRule',
  tags,
  summary: 'One routing rule',
  security,
  request: { params: ruleParams },
  responses: {
    200: { description: 'The rule', content: { 'application/json': { schema: RoutingRuleSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

const putRoute = createRoute({
  method: 'put',
  path: '/v1/channels/{channelId}/routing-rules/{ruleId}',
  operationId: 'replaceRoutingRule',
  tags,
  summary: 'Replace a routing rule (admins); with position, also move it',
  security,
  request: {
    params: ruleParams,
    body: { required: true, content: { 'application/json': { schema: RoutingRuleInput } } },
  },
  responses: {
    200: { description: 'The rule', content: { 'application/json': { schema: RoutingRuleSchema } } },
    ...problemResponses(400, 401, 403, 404, 413, 422),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/channels/{channelId}/routing-rules/{ruleId}',
  operationId: 'deleteRoutingRule',
  tags,
  summary: 'Remove a routing rule (admins); conversations it routed keep their handler, priority and labels',
  security,
  request: { params: ruleParams },
  responses: {
    204: { description: 'Removed' },
    ...problemResponses(401, 403, 404, 422),
  },
});

const ruleColumns = ['id', 'channel_id', 'position', 'name', 'conditions', 'actions', 'created_at'] as const;

type RuleRow = {
  id: string;
  channel_id: string;
  position: number;
  name: string;
  conditions: RoutingCondition[];
  actions: RoutingActions;
  created_at: Date;
};

function toRule(row: RuleRow): z.infer<typeof RoutingRuleSchema> {
  return {
    id: row.id,
    channelId: row.channel_id,
    position: row.position,
    name: row.name,
    conditions: row.conditions,
    actions: row.actions,
    description: describeRule(row),
    createdAt: row.created_at.toISOString(),
  };
}

function invalidReference(field: string, message: string): Problem {
  return new Problem(422, 'validation', 'Request validation failed', `invalid json: ${message}`, [{ field, message }]);
}

/**
 * Whoever assignTo names must exist for this channel. A team or AI agent row is share-locked until
 * commit: deleting it waits, then sees this rule (routing would fail on a rule naming a deleted team).
 */
async function checkAssignee(trx: Transaction<Database>, channel: Channel, actions: RoutingActions): Promise<void> {
  const target = actions.assignTo;
  switch (target?.kind) {
    case 'agent': {
      const agent = await trx
        .selectFrom('channel_agents')
        .select('user_id')
        .where('channel_id', '=', channel.id)
        .where('user_id', '=', target.agentId)
        .executeTakeFirst();
      if (!agent) throw invalidReference('actions.assignTo.agentId', `${target.agentId} is not an agent of this channel`);
      return;
    }
    case 'team': {
      const team = await trx
        .selectFrom('teams')
        .select('id')
        .where('account_id', '=', channel.account_id)
        .where('id', '=', target.teamId)
        .forShare()
        .executeTakeFirst();
      if (!team) throw invalidReference('actions.assignTo.teamId', `${target.teamId} is not a team of this account`);
      return;
    }
    case 'ai_agent': {
      const aiAgent = await trx
        .selectFrom('ai_agents')
        .select('id')
        .where('channel_id', '=', channel.id)
        .where('id', '=', target.aiAgentId)
        .forShare()
        .executeTakeFirst();
      if (!aiAgent)
        throw invalidReference('actions.assignTo.aiAgentId', `${target.aiAgentId} is not an AI agent of this channel`);
      return;
    }
    default:
      return;
  }
}

const MAX_RULES_PER_CHANNEL = 200;

export function routingRuleRoutes({ db }: ApiDeps) {
  async function list(trx: Db, channelId: string) {
    const rows = await trx
      .selectFrom('routing_rules')
      .select(ruleColumns)
      .where('channel_id', '=', channelId)
      .orderBy('position')
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toRule);
  }

  async function findRule(trx: Db, channelId: string, ruleId: string) {
    const row = await trx
      .selectFrom('routing_rules')
      .select(ruleColumns)
      .where('channel_id', '=', channelId)
      .where('id', '=', ruleId)
      .executeTakeFirst();
    if (!row) throw new Problem(404, 'not-found', 'Routing rule not found', `channel ${channelId} has no routing rule ${ruleId}`);
    return row;
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(listRoute, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'work');
    return c.json({ data: await list(db, channel.id) }, 200);
  });

  app.openapi(createRuleRoute, async (c) => {
    const input = c.req.valid('json');
    const created = await db.transaction().execute(async (trx) => {
      const channel = await findChannel(trx, c.get('user'), c.req.valid('param').channelId, 'configure');
      await lockChannel(trx, channel.id);
      await checkAssignee(trx, channel, input.actions);
      const { count } = await trx
        .selectFrom('routing_rules')
        .select((eb) => eb.fn.countAll<string>().as('count'))
        .where('channel_id', '=', channel.id)
        .executeTakeFirstOrThrow();
      // Every new conversation is matched against all of them: the list is bounded like every other.
      if (Number(count) >= MAX_RULES_PER_CHANNEL) {
        throw new Problem(
          409,
          'too-many-rules',
          'Too many routing rules',
          `a channel has at most ${MAX_RULES_PER_CHANNEL} routing rules; delete one first`,
        );
      }
      const id = randomUUID();
      await trx
        .insertInto('routing_rules')
        .values({
          id,
          channel_id: channel.id,
          // Last for now, then moved to where it was asked for.
          position: await endPosition(trx, 'routing_rules', channel.id),
          name: input.name,
          conditions: JSON.stringify(input.conditions),
          actions: JSON.stringify(input.actions),
        })
        .execute();
      await placeAt(trx, 'routing_rules', channel.id, id, input.position);
      return findRule(trx, channel.id, id);
    });
    return c.json(toRule(created), 201);
  });

  // Before the {ruleId} routes: "order" is no rule id.
  app.openapi(orderRoute, async (c) => {
    const { ids } = c.req.valid('json');
    const ordered = await db.transaction().execute(async (trx) => {
      const channel = await findChannel(trx, c.get('user'), c.req.valid('param').channelId, 'configure');
      await lockChannel(trx, channel.id);
      await reorder(trx, 'routing_rules', channel.id, ids, 'routing rules');
      return list(trx, channel.id);
    });
    return c.json({ data: ordered }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const { channelId, ruleId } = c.req.valid('param');
    const channel = await findChannel(db, c.get('user'), channelId, 'work');
    return c.json(toRule(await findRule(db, channel.id, ruleId)), 200);
  });

  app.openapi(putRoute, async (c) => {
    const { channelId, ruleId } = c.req.valid('param');
    const input = c.req.valid('json');
    const updated = await db.transaction().execute(async (trx) => {
      const channel = await findChannel(trx, c.get('user'), channelId, 'configure');
      await lockChannel(trx, channel.id);
      const rule = await findRule(trx, channel.id, ruleId);
      await checkAssignee(trx, channel, input.actions);
      await trx
        .updateTable('routing_rules')
        .set({ name: input.name, conditions: JSON.stringify(input.conditions), actions: JSON.stringify(input.actions) })
        .where('id', '=', rule.id)
        .execute();
      if (input.position !== undefined) await placeAt(trx, 'routing_rules', channel.id, rule.id, input.position);
      return findRule(trx, channel.id, rule.id);
    });
    return c.json(toRule(updated), 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const { channelId, ruleId } = c.req.valid('param');
    await db.transaction().execute(async (trx) => {
      const channel = await findChannel(trx, c.get('user'), channelId, 'configure');
      await lockChannel(trx, channel.id);
      const rule = await findRule(trx, channel.id, ruleId);
      await trx.deleteFrom('routing_rules').where('id', '=', rule.id).execute();
      await placeAt(trx, 'routing_rules', channel.id, null);
    });
    return c.body(null, 204);
  });

  return app;
}
