import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { recordEvent } from '../../activities/timeline.js';
import { findConversation } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// The customer's language, as an agent corrects it: the automatic mail (out of office, handover note, survey) and
// the rating page follow it from then on.

const LanguageSchema = z
  .object({
    language: z
      .string()
      .regex(/^[a-z]{2}$/, 'an ISO 639-1 code: two lower-case letters')
      .openapi({ description: "One of the channel's languages", example: 'de' }),
  })
  .openapi('ConversationLanguage');

const putLanguageRoute = createRoute({
  method: 'put',
  path: '/v1/conversations/{conversationId}/language',
  operationId: 'setConversationLanguage',
  tags: ['Conversations'],
  summary: "Set the customer's language",
  description:
    "Replaces the language detected from the customer's first mail. It must be one of the channel's languages (422 names them).",
  security: [{ apiKey: [] }],
  request: {
    params: z.object({ conversationId: z.uuid() }),
    body: { required: true, content: { 'application/json': { schema: LanguageSchema } } },
  },
  responses: {
    200: { description: 'The language now', content: { 'application/json': { schema: LanguageSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

export function conversationLanguageRoutes({ db }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();
  return app.openapi(putLanguageRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const { language } = c.req.valid('json');
    const user = c.get('user');
    const conversation = await findConversation(db, user, conversationId);
    const { languages } = await db
      .selectFrom('channels')
      .select('languages')
      .where('id', '=', conversation.channel_id)
      .executeTakeFirstOrThrow();
    if (!languages.includes(language)) {
      throw new Problem(422, 'validation', 'Request validation failed', `not one of the channel's languages`, [
        { field: 'language', message: `the channel's languages are ${languages.join(', ')}` },
      ]);
    }
    await db.transaction().execute(async (trx) => {
      await trx.updateTable('conversations').set({ language }).where('id', '=', conversationId).execute();
      await recordEvent(trx, conversationId, 'language_changed', {
        from: conversation.language,
        to: language,
        by: user.id,
      });
    });
    return c.json({ language }, 200);
  });
}
