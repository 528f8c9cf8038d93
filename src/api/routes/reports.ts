import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import { IANAZone } from 'luxon';
import { accessibleChannelIds, findChannel } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// Customer satisfaction by channel, by who resolved the conversation (agent or AI agent), and by period;
// conversation volume and first-response times by channel and period.

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
  operationId: 'getCsatReport',
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
    ...problemResponses(401, 403, 404, 422),
  },
});

const DAY_MS = 86_400_000;
/** The longest period the conversations report covers. */
const MAX_REPORT_DAYS = 366;
/** IANA names only: fixed offsets and POSIX strings mean different things to PostgreSQL and to people. */
const TIME_ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/;

const FirstResponseSchema = z
  .object({
    count: z.number().int().openapi({ description: 'Conversations created in the period that an agent has answered' }),
    medianSeconds: z.number().nullable(),
    p90Seconds: z.number().nullable(),
    averageSeconds: z.number().nullable(),
  })
  .openapi('FirstResponseTimes');

const ConversationPeriodSchema = z
  .object({
    start: z.iso.datetime(),
    end: z.iso.datetime().openapi({ description: 'Exclusive' }),
    created: z.number().int(),
    resolved: z.number().int().openapi({ description: 'Conversations whose latest resolution falls in the period' }),
    openAtEnd: z
      .number()
      .int()
      .openapi({ description: 'Created before the end and not resolved by then (a reopened one counts as open)' }),
    firstResponse: FirstResponseSchema.openapi({ description: 'Of the conversations created in the period' }),
  })
  .openapi('ConversationReportPeriod');

const conversationsRoute = createRoute({
  method: 'get',
  path: '/v1/reports/conversations',
  operationId: 'getConversationReport',
  tags: ['Reports'],
  summary: 'Conversations created, resolved and open, and first-response times, per channel and period',
  description:
    'Periods are calendar days, ISO weeks (from Monday) or months in `timeZone`; the first and last are cut to `from` and `to`. ' +
    "First-response time is from the conversation's creation to the first reply by a human agent. Agents see their channels only.",
  security,
  request: {
    query: z.object({
      from: z.iso
        .datetime({ offset: true })
        .optional()
        .openapi({ description: 'Start, inclusive (default: 30 days before `to`)' }),
      to: z.iso
        .datetime({ offset: true })
        .optional()
        .openapi({ description: `End, exclusive (default: now); at most ${MAX_REPORT_DAYS} days after from` }),
      channelId: z.uuid().optional(),
      groupBy: z.enum(['channel', 'none']).default('channel'),
      interval: z.enum(['day', 'week', 'month', 'none']).default('day'),
      timeZone: z
        .string()
        .max(64)
        .regex(TIME_ZONE_NAME)
        .default('UTC')
        .openapi({ description: 'IANA time zone of the periods, e.g. Europe/Berlin', example: 'UTC' }),
    }),
  },
  responses: {
    200: {
      description: 'The report',
      content: {
        'application/json': {
          schema: z
            .object({
              from: z.iso.datetime(),
              to: z.iso.datetime(),
              groupBy: z.enum(['channel', 'none']),
              interval: z.enum(['day', 'week', 'month', 'none']),
              timeZone: z.string(),
              groups: z.array(
                z.object({
                  channelId: z.uuid().nullable().openapi({ description: 'null with groupBy=none' }),
                  periods: z.array(ConversationPeriodSchema),
                }),
              ),
            })
            .openapi('ConversationReport'),
        },
      },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

function invalidQuery(field: string, message: string): Problem {
  return new Problem(422, 'validation', 'Request validation failed', 'invalid query', [{ field, message }]);
}

/** The period asked for: up to `to` (default now), from `from` (default 30 days before); an empty one is a 422. */
function reportPeriod(query: { from?: string | undefined; to?: string | undefined }): { from: Date; to: Date } {
  const to = query.to ? new Date(query.to) : new Date();
  const from = query.from ? new Date(query.from) : new Date(to.getTime() - 30 * DAY_MS);
  if (from >= to) throw invalidQuery('from', 'must be before "to"');
  return { from, to };
}

/** Seconds to the millisecond; null stays null. */
function seconds(value: string | number | null): number | null {
  return value === null ? null : Math.round(Number(value) * 1000) / 1000;
}

export function reportRoutes({ db }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();

  app.openapi(csatRoute, async (c) => {
    const query = c.req.valid('query');
    const { from, to } = reportPeriod(query);
    const byChannel = query.groupBy === 'channel';
    const byAgent = query.groupBy === 'agent';
    const user = c.get('user');
    // Like the conversations report: an agent sees the channels they belong to; a channel named: 403/404.
    if (query.channelId) await findChannel(db, user, query.channelId, 'work');
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
      .where('c.account_id', '=', user.accountId)
      .where('c.channel_id', 'in', accessibleChannelIds(db, user))
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

  app.openapi(conversationsRoute, async (c) => {
    const query = c.req.valid('query');
    const user = c.get('user');
    const { from, to } = reportPeriod(query);
    if (to.getTime() - from.getTime() > MAX_REPORT_DAYS * DAY_MS)
      throw invalidQuery('to', `at most ${MAX_REPORT_DAYS} days after "from"`);
    if (!IANAZone.isValidZone(query.timeZone)) {
      throw invalidQuery('timeZone', 'not an IANA time zone name');
    }
    const channelIds = query.channelId
      ? [(await findChannel(db, user, query.channelId, 'work')).id]
      : (await accessibleChannelIds(db, user).execute()).map((row) => row.id);

    const byChannel = query.groupBy === 'channel';
    const unit = query.interval;
    const step = `1 ${unit}`;
    const bucketOf = (column: string) =>
      unit === 'none' ? sql`'-infinity'::timestamp` : sql`date_trunc(${unit}, ${sql.ref(column)} at time zone params.tz)`;
    const periods =
      unit === 'none'
        ? sql`select '-infinity'::timestamp as bucket, f as start, t as stop from params`
        : sql`select b as bucket, greatest(b at time zone tz, f) as start, least((b + ${step}::interval) at time zone tz, t) as stop
              from params, generate_series(date_trunc(${unit}, f at time zone tz), t at time zone tz, ${step}::interval) as b`;
    const responseSeconds = sql`extract(epoch from (first_response_at - created_at))::float8`;

    // Open at the end of a period: those open before "from", plus every period's created minus resolved up to it.
    const { rows } = await sql<{
      channel_id: string | null;
      start: Date;
      stop: Date;
      created: string;
      resolved: string;
      open_at_end: string;
      responded: string;
      median: number | null;
      p90: number | null;
      average: number | null;
    }>`
      with params as (select ${from.toISOString()}::timestamptz as f, ${to.toISOString()}::timestamptz as t, ${query.timeZone}::text as tz),
      periods as (${periods}),
      groups as (${byChannel ? sql`select unnest(${channelIds}::uuid[]) as grp` : sql`select null::uuid as grp`}),
      convs as (
        select ${byChannel ? sql`c.channel_id` : sql`null::uuid`} as grp, c.created_at, c.resolved_at, c.first_response_at,
               ${bucketOf('c.created_at')} as created_bucket, ${bucketOf('c.resolved_at')} as resolved_bucket
        from conversations c, params
        where c.account_id = ${user.accountId} and c.channel_id = any(${channelIds}::uuid[]) and c.created_at < params.t
          and c.status <> 'spam' -- kept out of the queue, and out of the workload it measures
      ),
      created as (
        select grp, created_bucket as bucket, count(*) as created, count(first_response_at) as responded,
               percentile_cont(0.5) within group (order by ${responseSeconds}) as median,
               percentile_cont(0.9) within group (order by ${responseSeconds}) as p90,
               avg(${responseSeconds}) as average
        from convs, params where created_at >= params.f
        group by grp, created_bucket
      ),
      resolved as (
        select grp, resolved_bucket as bucket, count(*) as resolved
        from convs, params where resolved_at >= params.f and resolved_at < params.t
        group by grp, resolved_bucket
      ),
      open_before as (
        select grp, count(*) filter (where created_at < params.f) - count(*) filter (where resolved_at < params.f) as open
        from convs, params group by grp
      )
      select g.grp as channel_id, p.start, p.stop,
             coalesce(cr.created, 0) as created, coalesce(rs.resolved, 0) as resolved,
             coalesce(ob.open, 0) + sum(coalesce(cr.created, 0) - coalesce(rs.resolved, 0)) over (partition by g.grp order by p.bucket) as open_at_end,
             coalesce(cr.responded, 0) as responded, cr.median, cr.p90, cr.average
      from groups g cross join periods p
      left join created cr on cr.grp is not distinct from g.grp and cr.bucket = p.bucket
      left join resolved rs on rs.grp is not distinct from g.grp and rs.bucket = p.bucket
      left join open_before ob on ob.grp is not distinct from g.grp
      where p.start < p.stop
      order by g.grp, p.bucket
    `
      .execute(db)
      .catch((error: unknown) => {
        // A name Intl knows but this PostgreSQL's time zone database does not.
        if ((error as { code?: string }).code === '22023' && /time zone/i.test(String(error))) {
          throw invalidQuery('timeZone', 'not a time zone this server knows');
        }
        throw error;
      });

    const groups = new Map<string | null, z.infer<typeof ConversationPeriodSchema>[]>();
    for (const row of rows) {
      const periodsOfGroup = groups.get(row.channel_id) ?? [];
      groups.set(row.channel_id, periodsOfGroup);
      periodsOfGroup.push({
        start: row.start.toISOString(),
        end: row.stop.toISOString(),
        created: Number(row.created),
        resolved: Number(row.resolved),
        openAtEnd: Number(row.open_at_end),
        firstResponse: {
          count: Number(row.responded),
          medianSeconds: seconds(row.median),
          p90Seconds: seconds(row.p90),
          averageSeconds: seconds(row.average),
        },
      });
    }
    return c.json(
      {
        from: from.toISOString(),
        to: to.toISOString(),
        groupBy: query.groupBy,
        interval: query.interval,
        timeZone: query.timeZone,
        groups: [...groups].map(([channelId, periods]) => ({ channelId, periods })),
      },
      200,
    );
  });

  return app;
}
