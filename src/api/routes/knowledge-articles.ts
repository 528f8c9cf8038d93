import { randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Db } from '../../db/connection.js';
import { findChannel } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { IdempotencyHeadersSchema } from '../idempotency.js';
import { afterCursor, decodeCursor, PageQuerySchema, pageSchema, toPage } from '../pagination.js';
import { Problem, problemResponses } from '../problem.js';

// A channel's knowledge articles: what its knowledge-base AI agents answer from (and what an
// OpenAI-compatible one is given). The AI activity reads them per answer, so changes apply at once.

const security = [{ apiKey: [] }];
const tags = ['Knowledge'];
const channelParams = z.object({ channelId: z.uuid() });
const articleParams = z.object({ channelId: z.uuid(), articleId: z.uuid() });

const KnowledgeArticleSchema = z
  .object({
    id: z.uuid(),
    channelId: z.uuid(),
    title: z.string(),
    body: z.string(),
    createdAt: z.iso.datetime(),
  })
  .openapi('KnowledgeArticle');

const KnowledgeArticleInput = z
  .object({
    title: z.string().trim().min(1).max(300),
    body: z.string().trim().min(1).max(100_000).openapi({ description: 'Plain text; the AI agent quotes it to customers' }),
  })
  .openapi('KnowledgeArticleInput');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/knowledge-articles',
  operationId: 'listKnowledgeArticles',
  tags,
  summary: "The channel's knowledge articles, newest first",
  security,
  request: { params: channelParams, query: PageQuerySchema },
  responses: {
    200: {
      description: 'Knowledge articles',
      content: { 'application/json': { schema: pageSchema(KnowledgeArticleSchema, 'KnowledgeArticlePage') } },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

const createArticleRoute = createRoute({
  method: 'post',
  path: '/v1/channels/{channelId}/knowledge-articles',
  operationId: 'createKnowledgeArticle',
  tags,
  summary: 'Add a knowledge article to the channel (admins)',
  security,
  request: {
    params: channelParams,
    headers: IdempotencyHeadersSchema,
    body: { required: true, content: { 'application/json': { schema: KnowledgeArticleInput } } },
  },
  responses: {
    201: { description: 'Created', content: { 'application/json': { schema: KnowledgeArticleSchema } } },
    ...problemResponses(400, 401, 403, 404, 413, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/knowledge-articles/{articleId}',
  operationId: 'getKnowledgeArticle',
  tags,
  summary: 'One knowledge article',
  security,
  request: { params: articleParams },
  responses: {
    200: { description: 'The article', content: { 'application/json': { schema: KnowledgeArticleSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

const putRoute = createRoute({
  method: 'put',
  path: '/v1/channels/{channelId}/knowledge-articles/{articleId}',
  operationId: 'replaceKnowledgeArticle',
  tags,
  summary: 'Replace the title and body of a knowledge article (admins)',
  security,
  request: {
    params: articleParams,
    body: { required: true, content: { 'application/json': { schema: KnowledgeArticleInput } } },
  },
  responses: {
    200: { description: 'The article', content: { 'application/json': { schema: KnowledgeArticleSchema } } },
    ...problemResponses(400, 401, 403, 404, 413, 422),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/channels/{channelId}/knowledge-articles/{articleId}',
  operationId: 'deleteKnowledgeArticle',
  tags,
  summary: 'Remove a knowledge article (admins); answers already sent keep their text',
  security,
  request: { params: articleParams },
  responses: {
    204: { description: 'Removed' },
    ...problemResponses(401, 403, 404, 422),
  },
});

const articleColumns = ['id', 'channel_id', 'title', 'body', 'created_at'] as const;

type ArticleRow = { id: string; channel_id: string; title: string; body: string; created_at: Date };

function toArticle(row: ArticleRow): z.infer<typeof KnowledgeArticleSchema> {
  return {
    id: row.id,
    channelId: row.channel_id,
    title: row.title,
    body: row.body,
    createdAt: row.created_at.toISOString(),
  };
}

function notFound(channelId: string, articleId: string): Problem {
  return new Problem(
    404,
    'not-found',
    'Knowledge article not found',
    `channel ${channelId} has no knowledge article ${articleId}`,
  );
}

export function knowledgeArticleRoutes({ db }: ApiDeps) {
  async function findArticle(trx: Db, channelId: string, articleId: string) {
    const row = await trx
      .selectFrom('knowledge_articles')
      .select(articleColumns)
      .where('channel_id', '=', channelId)
      .where('id', '=', articleId)
      .executeTakeFirst();
    if (!row) throw notFound(channelId, articleId);
    return row;
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(listRoute, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'work');
    const { cursor, limit } = c.req.valid('query');
    const cursorId = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await db
      .selectFrom('knowledge_articles as a')
      .select(articleColumns.map((column) => `a.${column}` as const))
      .where('a.channel_id', '=', channel.id)
      .$if(cursorId !== undefined, (q) => q.where(afterCursor('knowledge_articles', 'a', cursorId!)))
      .orderBy('a.created_at', 'desc')
      .orderBy('a.id', 'desc')
      .limit(limit + 1)
      .execute();
    return c.json(toPage(rows, limit, toArticle), 200);
  });

  app.openapi(createArticleRoute, async (c) => {
    const input = c.req.valid('json');
    const created = await db.transaction().execute(async (trx) => {
      const channel = await findChannel(trx, c.get('user'), c.req.valid('param').channelId, 'configure');
      return trx
        .insertInto('knowledge_articles')
        .values({ id: randomUUID(), channel_id: channel.id, title: input.title, body: input.body })
        .returning(articleColumns)
        .executeTakeFirstOrThrow();
    });
    return c.json(toArticle(created), 201);
  });

  app.openapi(getRoute, async (c) => {
    const { channelId, articleId } = c.req.valid('param');
    const channel = await findChannel(db, c.get('user'), channelId, 'work');
    return c.json(toArticle(await findArticle(db, channel.id, articleId)), 200);
  });

  app.openapi(putRoute, async (c) => {
    const { channelId, articleId } = c.req.valid('param');
    const input = c.req.valid('json');
    const updated = await db.transaction().execute(async (trx) => {
      const channel = await findChannel(trx, c.get('user'), channelId, 'configure');
      const row = await trx
        .updateTable('knowledge_articles')
        .set({ title: input.title, body: input.body })
        .where('channel_id', '=', channel.id)
        .where('id', '=', articleId)
        .returning(articleColumns)
        .executeTakeFirst();
      if (!row) throw notFound(channel.id, articleId);
      return row;
    });
    return c.json(toArticle(updated), 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const { channelId, articleId } = c.req.valid('param');
    await db.transaction().execute(async (trx) => {
      const channel = await findChannel(trx, c.get('user'), channelId, 'configure');
      const deleted = await trx
        .deleteFrom('knowledge_articles')
        .where('channel_id', '=', channel.id)
        .where('id', '=', articleId)
        .returning('id')
        .executeTakeFirst();
      if (!deleted) throw notFound(channel.id, articleId);
    });
    return c.body(null, 204);
  });

  return app;
}
