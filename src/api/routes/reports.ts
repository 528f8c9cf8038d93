import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// Customer satisfaction by channel, by who resolved the conversation (agent or AI agent), and by period.

const security = [{ apiKey: [] }];

const CsatGroupSchema = z
  .object({
    channelId: z.uuid().nullable(),
    agentId: z.uuid().nullable().openapi({ description: 'The human agent who resolved the conversation' }),
    aiAgentId: z.uuid().nullable().openapi({ description: 'The AI agent that resolved it' }),
    surveysSent: z.number().int(),
    ratings: z.number().int(),
    average: z.number().nullable().openapi({ description: 'Mean rating 1–5; null without ratings' }),
    distribution: z.object({
      1: z.number().int(),
      2: z.number().int(),
      3: z.number().int(),
      4: z.number().int(),
      5: z.number().int(),
    }),
    responseRate: z.number().nullable().openapi({ description: 'ratings / surveysSent; null without surveys' }),
  })
  .openapi('CsatReportGroup');

const csatRoute = createRoute({
  method: 'get',
  path: '/v1/reports/csat',
  tags: ['Reports'],
  summary: 'CSAT per channel, per agent, or overall, for surveys sent in a period',
  security,
  request: {
    query: z.object({
      from: z.iso
        .datetime({ offset: true })
        .optional()
        .openapi({ description: 'Surveys sent at or after (default: 30 days ago)' }),
      to: z.iso.datetime({ offset: true }).optional().openapi({ description: 'Surveys sent before (default: now)' }),
      channelId: z.uuid().optional(),
      agentId: z.uuid().optional(),
      groupBy: z.enum(['channel', 'agent', 'none']).default('channel'),
    }),
  },
  responses: {
    200: {
      description: 'The report',
      content: {
        'application/json': {
          schema: z
            .object({ from: z.iso.datetime(), to: z.iso.datetime(), groupBy: z.string(), groups: z.array(CsatGroupSchema) })
            .openapi('CsatReport'),
        },
      },
    },
    ...problemResponses(401, 422),
  },
});

export function reportRoutes({ db }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();

  app.openapi(csatRoute, async (c) => {
    const query = c.req.valid('query');
    const to = query.to ? new Date(query.to) : new Date();
    const from = query.from ? new Date(query.from) : new Date(to.getTime() - 30 * 86_400_000);
    if (from >= to) {
      throw new Problem(422, 'validation', 'Request validation failed', 'the period is empty', [
        { field: 'from', message: 'must be before "to"' },
      ]);
    }
    const byChannel = query.groupBy === 'channel';
    const byAgent = query.groupBy === 'agent';
    const rows = await db
      .selectFrom('csat_surveys as s')
      .innerJoin('conversations as c', 'c.id', 's.conversation_id')
      .select((eb) => [
        (byChannel ? sql<string | null>`s.channel_id` : sql<string | null>`null`).as('channel_id'),
        (byAgent ? sql<string | null>`s.agent_id` : sql<string | null>`null`).as('agent_id'),
        (byAgent ? sql<string | null>`s.ai_agent_id` : sql<string | null>`null`).as('ai_agent_id'),
        eb.fn.countAll<string>().as('surveys'),
        eb.fn.count<string>('s.rating').as('ratings'),
        eb.fn.avg<string | null>('s.rating').as('average'),
        ...([1, 2, 3, 4, 5] as const).map((n) => sql<string>`count(*) filter (where s.rating = ${n})`.as(`r${n}`)),
      ])
      .where('c.account_id', '=', c.get('user').accountId)
      .where('s.created_at', '>=', from)
      .where('s.created_at', '<', to)
      .$if(query.channelId !== undefined, (q) => q.where('s.channel_id', '=', query.channelId!))
      .$if(query.agentId !== undefined, (q) => q.where('s.agent_id', '=', query.agentId!))
      .$if(byChannel, (q) => q.groupBy('s.channel_id'))
      .$if(byAgent, (q) => q.groupBy(['s.agent_id', 's.ai_agent_id']))
      .execute();
    const groups = rows.map((row) => {
      const surveys = Number(row.surveys);
      const ratings = Number(row.ratings);
      return {
        channelId: row.channel_id,
        agentId: row.agent_id,
        aiAgentId: row.ai_agent_id,
        surveysSent: surveys,
        ratings,
        average: row.average === null ? null : Math.round(Number(row.average) * 100) / 100,
        distribution: { 1: Number(row.r1), 2: Number(row.r2), 3: Number(row.r3), 4: Number(row.r4), 5: Number(row.r5) },
        responseRate: surveys === 0 ? null : Math.round((ratings / surveys) * 1000) / 1000,
      };
    });
    return c.json({ from: from.toISOString(), to: to.toISOString(), groupBy: query.groupBy, groups }, 200);
  });

  return app;
}
