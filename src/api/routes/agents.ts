import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { selectChannelAgents } from '../../db/channel-agents.js';
import { requestRebalance } from '../../temporal/assignment-queue.js';
import { findChannel } from '../access.js';
import { requireAdmin } from '../auth.js';
import type { ApiDeps, AppEnv, AuthenticatedUser } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// Who answers a channel's conversations, how many each takes at once, and who is available now.
// Every change here frees or removes capacity: the channel's assignment queue is told at once.

const security = [{ apiKey: [] }];
const channelParams = z.object({ channelId: z.uuid() });
const memberParams = z.object({ channelId: z.uuid(), userId: z.uuid() });

const ChannelAgentSchema = z
  .object({
    userId: z.uuid(),
    name: z.string(),
    available: z.boolean(),
    capacity: z.number().int().nullable().openapi({ description: "Own capacity; null uses the channel's default" }),
    effectiveCapacity: z.number().int().nullable().openapi({ description: 'null = unlimited' }),
    openConversations: z.number().int(),
  })
  .openapi('ChannelAgent');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/agents',
  operationId: 'listChannelAgents',
  tags: ['Agents'],
  summary: "The channel's human agents with their availability, capacity and current load",
  security,
  request: { params: channelParams },
  responses: {
    200: {
      description: 'Agents',
      content: { 'application/json': { schema: z.object({ data: z.array(ChannelAgentSchema) }) } },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

const putRoute = createRoute({
  method: 'put',
  path: '/v1/channels/{channelId}/agents/{userId}',
  operationId: 'setChannelAgent',
  tags: ['Agents'],
  summary: 'Add a user of the account to the channel as an agent, or change their capacity',
  description:
    'Queued conversations are assigned at once when this frees capacity. The body is required; `{}` (or capacity null) ' +
    "adds the agent with the channel's default capacity, or puts them back on it.",
  security,
  request: {
    params: memberParams,
    body: {
      required: true,
      content: {
        'application/json': {
          // Strict: an unknown field (a typo) is a 422. `{}` stays meaningful: capacity left out is null.
          schema: z
            .strictObject({
              capacity: z
                .number()
                .int()
                .min(1)
                .max(1000)
                .nullable()
                .default(null)
                .openapi({ description: "Open conversations at once; null uses the channel's default" }),
            })
            .openapi('ChannelAgentInput'),
        },
      },
    },
  },
  responses: {
    200: { description: 'The agent', content: { 'application/json': { schema: ChannelAgentSchema } } },
    ...problemResponses(401, 403, 404, 422, 503),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/channels/{channelId}/agents/{userId}',
  operationId: 'removeChannelAgent',
  tags: ['Agents'],
  summary: 'Remove an agent from the channel; their open conversations go to other agents',
  security,
  request: { params: memberParams },
  responses: {
    204: { description: 'Removed' },
    ...problemResponses(401, 403, 404, 422, 503),
  },
});

const availabilityRoute = createRoute({
  method: 'put',
  path: '/v1/users/{userId}/availability',
  operationId: 'setUserAvailability',
  tags: ['Agents'],
  summary: 'Set whether the agent takes new conversations (an agent sets their own; an admin anyone’s)',
  description: 'Going unavailable hands the agent’s open conversations to other agents; coming back takes from the queue.',
  security,
  request: {
    params: z.object({ userId: z.uuid() }),
    body: {
      required: true,
      content: { 'application/json': { schema: z.object({ available: z.boolean() }).openapi('AvailabilityInput') } },
    },
  },
  responses: {
    200: {
      description: 'Saved',
      content: { 'application/json': { schema: z.object({ userId: z.uuid(), available: z.boolean() }).openapi('Availability') } },
    },
    ...problemResponses(401, 403, 404, 422, 503),
  },
});

export function agentRoutes({ db, temporal, taskQueue }: ApiDeps) {
  async function userOf(user: AuthenticatedUser, userId: string) {
    const found = await db
      .selectFrom('users')
      .select(['id', 'name', 'available'])
      .where('id', '=', userId)
      .where('account_id', '=', user.accountId)
      .executeTakeFirst();
    if (!found) throw new Problem(404, 'not-found', 'User not found', `no user ${userId}`);
    return found;
  }

  async function agentsOf(channelId: string, userId?: string) {
    const rows = await selectChannelAgents(db, channelId)
      .$if(userId !== undefined, (q) => q.where('u.id', '=', userId!))
      .orderBy('ca.created_at')
      .execute();
    return rows.map((row) => ({
      userId: row.id,
      name: row.name,
      available: row.available,
      capacity: row.capacity,
      effectiveCapacity: row.effective_capacity,
      openConversations: Number(row.open_conversations ?? 0),
    }));
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(listRoute, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'work');
    return c.json({ data: await agentsOf(channel.id) }, 200);
  });

  app.openapi(putRoute, async (c) => {
    const { channelId, userId } = c.req.valid('param');
    const { capacity } = c.req.valid('json');
    const user = c.get('user');
    const channel = await findChannel(db, user, channelId, 'configure');
    const agent = await userOf(user, userId);
    await db
      .insertInto('channel_agents')
      .values({ channel_id: channel.id, user_id: agent.id, capacity })
      .onConflict((oc) => oc.columns(['channel_id', 'user_id']).doUpdateSet({ capacity }))
      .execute();
    await requestRebalance(
      temporal,
      channel,
      { reason: `${agent.name} joined the channel or got capacity ${capacity ?? 'of the channel default'}` },
      taskQueue,
    );
    return c.json((await agentsOf(channel.id, agent.id))[0]!, 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const { channelId, userId } = c.req.valid('param');
    const user = c.get('user');
    const channel = await findChannel(db, user, channelId, 'configure');
    const agent = await userOf(user, userId);
    await db.deleteFrom('channel_agents').where('channel_id', '=', channel.id).where('user_id', '=', agent.id).execute();
    // Also when the row was gone already: a repeated DELETE after a 503 must still hand their conversations on.
    await requestRebalance(
      temporal,
      channel,
      { reason: `${agent.name} left the channel`, takeBackFromUserId: agent.id },
      taskQueue,
    );
    return c.body(null, 204);
  });

  app.openapi(availabilityRoute, async (c) => {
    const { userId } = c.req.valid('param');
    const { available } = c.req.valid('json');
    const user = c.get('user');
    const agent = await userOf(user, userId);
    if (agent.id !== user.id) requireAdmin(user, "sets another user's availability");
    await db.updateTable('users').set({ available }).where('id', '=', agent.id).execute();
    const channels = await db
      .selectFrom('channel_agents as ca')
      .innerJoin('channels as ch', 'ch.id', 'ca.channel_id')
      .select(['ch.id', 'ch.name'])
      .where('ca.user_id', '=', agent.id)
      .execute();
    for (const channel of channels) {
      await requestRebalance(
        temporal,
        channel,
        available
          ? { reason: `${agent.name} became available` }
          : { reason: `${agent.name} became unavailable`, takeBackFromUserId: agent.id },
        taskQueue,
      );
    }
    return c.json({ userId: agent.id, available }, 200);
  });

  return app;
}
