import { randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql, type Transaction } from 'kysely';
import type { Db } from '../../db/connection.js';
import type { Database } from '../../db/schema.js';
import { requestRebalance } from '../../temporal/assignment-queue.js';
import { requireAdmin } from '../auth.js';
import type { ApiDeps, AppEnv, AuthenticatedUser } from '../env.js';
import { IdempotencyHeadersSchema } from '../idempotency.js';
import { afterCursor, decodeCursor, PageQuerySchema, pageSchema, toPage } from '../pagination.js';
import { Problem, problemResponses } from '../problem.js';

// Teams of an account: a routing rule sends a conversation to a team, and only its members are
// assigned it. Everyone in the account reads them; admins change them.

const security = [{ apiKey: [] }];
const tags = ['Teams'];
const teamParams = z.object({ teamId: z.uuid() });
const nameSchema = z.string().trim().min(1).max(120);
const userIdsSchema = z
  .array(z.uuid())
  .max(1000)
  .openapi({ description: 'Users of the account; the list replaces the members (duplicates count once)' });

const TeamSchema = z
  .object({
    id: z.uuid(),
    accountId: z.uuid(),
    name: z.string(),
    members: z.array(z.object({ userId: z.uuid(), name: z.string() })).openapi({ description: 'By name' }),
    createdAt: z.iso.datetime(),
  })
  .openapi('Team');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/teams',
  operationId: 'listTeams',
  tags,
  summary: "The account's teams, newest first",
  security,
  request: { query: PageQuerySchema },
  responses: {
    200: { description: 'Teams', content: { 'application/json': { schema: pageSchema(TeamSchema, 'TeamPage') } } },
    ...problemResponses(401, 422),
  },
});

const createTeamRoute = createRoute({
  method: 'post',
  path: '/v1/teams',
  operationId: 'createTeam',
  tags,
  summary: 'Add a team (admins)',
  security,
  request: {
    headers: IdempotencyHeadersSchema,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z.object({ name: nameSchema, userIds: userIdsSchema.default([]) }).openapi('TeamInput'),
        },
      },
    },
  },
  responses: {
    201: { description: 'Created', content: { 'application/json': { schema: TeamSchema } } },
    ...problemResponses(400, 401, 403, 413, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/teams/{teamId}',
  operationId: 'getTeam',
  tags,
  summary: 'One team with its members',
  security,
  request: { params: teamParams },
  responses: {
    200: { description: 'The team', content: { 'application/json': { schema: TeamSchema } } },
    ...problemResponses(401, 404, 422),
  },
});

const patchRoute = createRoute({
  method: 'patch',
  path: '/v1/teams/{teamId}',
  operationId: 'renameTeam',
  tags,
  summary: 'Rename a team (admins)',
  security,
  request: {
    params: teamParams,
    body: {
      required: true,
      content: {
        'application/json': {
          // Strict, and not empty: an unknown field or {} is a 422, not a 200 that changes nothing.
          schema: z
            .strictObject({ name: nameSchema.optional() })
            .refine((update) => Object.keys(update).length > 0, 'send at least one of: name')
            .openapi('TeamUpdate', { minProperties: 1 }),
        },
      },
    },
  },
  responses: {
    200: { description: 'The team', content: { 'application/json': { schema: TeamSchema } } },
    ...problemResponses(400, 401, 403, 404, 413, 422),
  },
});

const membersRoute = createRoute({
  method: 'put',
  path: '/v1/teams/{teamId}/members',
  operationId: 'setTeamMembers',
  tags,
  summary: "Replace a team's members (admins)",
  description:
    'Conversations waiting for the team in a queue are offered to the new members at once. ' +
    'Conversations already assigned stay with their agent.',
  security,
  request: {
    params: teamParams,
    body: {
      required: true,
      content: { 'application/json': { schema: z.object({ userIds: userIdsSchema }).openapi('TeamMembersInput') } },
    },
  },
  responses: {
    200: { description: 'The team', content: { 'application/json': { schema: TeamSchema } } },
    ...problemResponses(400, 401, 403, 404, 409, 413, 422, 503),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/teams/{teamId}',
  operationId: 'deleteTeam',
  tags,
  summary: 'Remove a team (admins)',
  description:
    'While routing rules assign to the team the answer is 409 naming them: change or delete them first. ' +
    'Conversations of the team stay where they are; queued ones may then go to any agent of their channel.',
  security,
  request: { params: teamParams },
  responses: {
    204: { description: 'Removed' },
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

type TeamRow = { id: string; account_id: string; name: string; created_at: Date };
const teamColumns = ['id', 'account_id', 'name', 'created_at'] as const;

/** How many rules a 409 names before it says "and n more". */
const NAMED_IN_CONFLICT = 5;

function isForeignKeyViolation(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '23503';
}

/** Channels where conversations wait in the queue for this team: their queues are told of a change. */
async function channelsWaitingFor(trx: Db, teamId: string) {
  return trx
    .selectFrom('channels as ch')
    .select(['ch.id', 'ch.name'])
    .where((eb) =>
      eb.exists(
        eb
          .selectFrom('conversations as c')
          .select('c.id')
          .whereRef('c.channel_id', '=', 'ch.id')
          .where('c.team_id', '=', teamId)
          .where('c.status', '=', 'open')
          .where('c.assignee_id', 'is', null)
          .where('c.queued_at', 'is not', null),
      ),
    )
    .orderBy('ch.id')
    .execute();
}

/** Replaces the members; every id must be a user of the account, key-share locked so none is deleted meanwhile. */
async function setMembers(trx: Transaction<Database>, accountId: string, teamId: string, userIds: string[]) {
  const unique = [...new Set(userIds)];
  const found =
    unique.length === 0
      ? []
      : await trx
          .selectFrom('users')
          .select('id')
          .where('account_id', '=', accountId)
          .where('id', 'in', unique)
          .orderBy('id')
          .forKeyShare()
          .execute();
  const known = new Set(found.map((row) => row.id));
  const errors = userIds.flatMap((id, index) =>
    known.has(id) ? [] : [{ field: `userIds.${index}`, message: `${id} is not a user of this account` }],
  );
  if (errors.length > 0) {
    throw new Problem(422, 'validation', 'Request validation failed', 'userIds must name users of this account', errors);
  }
  await trx.deleteFrom('team_members').where('team_id', '=', teamId).execute();
  if (unique.length > 0) {
    await trx
      .insertInto('team_members')
      .values(unique.map((userId) => ({ team_id: teamId, user_id: userId })))
      .execute();
  }
}

export function teamRoutes({ db, temporal, taskQueue }: ApiDeps) {
  async function toTeams(trx: Db, rows: TeamRow[]) {
    const members =
      rows.length === 0
        ? []
        : await trx
            .selectFrom('team_members as m')
            .innerJoin('users as u', 'u.id', 'm.user_id')
            .select(['m.team_id', 'u.id', 'u.name'])
            .where(
              'm.team_id',
              'in',
              rows.map((row) => row.id),
            )
            .orderBy('u.name')
            .orderBy('u.id')
            .execute();
    return rows.map((row) => ({
      id: row.id,
      accountId: row.account_id,
      name: row.name,
      members: members.filter((m) => m.team_id === row.id).map((m) => ({ userId: m.id, name: m.name })),
      createdAt: row.created_at.toISOString(),
    }));
  }

  async function toTeam(trx: Db, row: TeamRow) {
    return (await toTeams(trx, [row]))[0]!;
  }

  /** A team of the caller's account (else 404), optionally row-locked for a change. */
  async function findTeam(trx: Db, user: AuthenticatedUser, teamId: string, lock = false) {
    const row = await trx
      .selectFrom('teams')
      .select(teamColumns)
      .where('id', '=', teamId)
      .where('account_id', '=', user.accountId)
      .$if(lock, (q) => q.forUpdate())
      .executeTakeFirst();
    if (!row) throw new Problem(404, 'not-found', 'Team not found', `no team ${teamId}`);
    return row;
  }

  async function tellQueues(channels: Array<{ id: string; name: string }>, reason: string) {
    for (const channel of channels) await requestRebalance(temporal, channel, { reason }, taskQueue);
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(listRoute, async (c) => {
    const { cursor, limit } = c.req.valid('query');
    const cursorId = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await db
      .selectFrom('teams as t')
      .select(teamColumns.map((column) => `t.${column}` as const))
      .where('t.account_id', '=', c.get('user').accountId)
      .$if(cursorId !== undefined, (q) => q.where(afterCursor('teams', 't', cursorId!)))
      .orderBy('t.created_at', 'desc')
      .orderBy('t.id', 'desc')
      .limit(limit + 1)
      .execute();
    const page = toPage(rows, limit, (row) => row);
    return c.json({ data: await toTeams(db, page.data), nextCursor: page.nextCursor }, 200);
  });

  app.openapi(createTeamRoute, async (c) => {
    const user = c.get('user');
    requireAdmin(user, 'manages teams');
    const input = c.req.valid('json');
    const created = await db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('teams')
        .values({ id: randomUUID(), account_id: user.accountId, name: input.name })
        .returning(teamColumns)
        .executeTakeFirstOrThrow();
      await setMembers(trx, user.accountId, row.id, input.userIds);
      return toTeam(trx, row);
    });
    return c.json(created, 201);
  });

  app.openapi(getRoute, async (c) => {
    const row = await findTeam(db, c.get('user'), c.req.valid('param').teamId);
    return c.json(await toTeam(db, row), 200);
  });

  app.openapi(patchRoute, async (c) => {
    const user = c.get('user');
    const { teamId } = c.req.valid('param');
    const input = c.req.valid('json');
    const updated = await db.transaction().execute(async (trx) => {
      const current = await findTeam(trx, user, teamId, true);
      requireAdmin(user, 'manages teams');
      const row =
        input.name === undefined
          ? current
          : await trx
              .updateTable('teams')
              .set({ name: input.name })
              .where('id', '=', current.id)
              .returning(teamColumns)
              .executeTakeFirstOrThrow();
      return toTeam(trx, row);
    });
    return c.json(updated, 200);
  });

  app.openapi(membersRoute, async (c) => {
    const user = c.get('user');
    const { teamId } = c.req.valid('param');
    const { userIds } = c.req.valid('json');
    let result;
    try {
      result = await db.transaction().execute(async (trx) => {
        const row = await findTeam(trx, user, teamId, true);
        requireAdmin(user, 'manages teams');
        await setMembers(trx, user.accountId, row.id, userIds);
        return { team: await toTeam(trx, row), waiting: await channelsWaitingFor(trx, row.id) };
      });
    } catch (error) {
      // The key-share lock rules this out; kept so that a race can never become a 500.
      if (!isForeignKeyViolation(error)) throw error;
      throw new Problem(
        409,
        'conflict',
        'A user was removed meanwhile',
        'a user named in userIds was just removed; repeat the request',
      );
    }
    await tellQueues(result.waiting, `the members of team ${result.team.name} changed`);
    return c.json(result.team, 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const user = c.get('user');
    const { teamId } = c.req.valid('param');
    const { team, waiting } = await db.transaction().execute(async (trx) => {
      // Rules naming the team share-lock its row while they are written: this waits for them.
      const row = await findTeam(trx, user, teamId, true);
      requireAdmin(user, 'manages teams');
      const rules = await trx
        .selectFrom('routing_rules as r')
        .innerJoin('channels as ch', 'ch.id', 'r.channel_id')
        .select(['r.id', 'r.name', 'ch.name as channel_name'])
        .where('ch.account_id', '=', user.accountId)
        .where(sql<string>`r.actions->'assignTo'->>'teamId'`, '=', row.id)
        .orderBy('ch.name')
        .orderBy('r.position')
        .execute();
      if (rules.length > 0) {
        const named = rules
          .slice(0, NAMED_IN_CONFLICT)
          .map((rule) => `"${rule.name}" (${rule.id}, channel ${rule.channel_name})`);
        const more = rules.length > NAMED_IN_CONFLICT ? ` and ${rules.length - NAMED_IN_CONFLICT} more` : '';
        throw new Problem(
          409,
          'conflict',
          'The team is used by routing rules',
          `routing rule(s) ${named.join(', ')}${more} assign to team ${row.name}: change or delete them first`,
        );
      }
      const waitingChannels = await channelsWaitingFor(trx, row.id);
      // Its conversations keep everything but the team (on delete set null); memberships go with it.
      await trx.deleteFrom('teams').where('id', '=', row.id).execute();
      return { team: row, waiting: waitingChannels };
    });
    await tellQueues(waiting, `team ${team.name} was removed: its queued conversations may go to any agent`);
    return c.body(null, 204);
  });

  return app;
}
