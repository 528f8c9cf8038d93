import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { html } from 'hono/html';
import { catalogLanguage, message, type CatalogLanguage } from '../../domain/message-catalogs.js';
import { verifyUnsubscribeToken } from '../../domain/unsubscribe-token.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { htmlDocument, htmlResponse } from '../html-document.js';
import { retryAfterHeader } from '../problem.js';
import { clientAddressBehind, type RateLimiter } from '../rate-limit.js';

// One-click unsubscribe from survey mail (RFC 8058): the mail client POSTs "List-Unsubscribe=One-Click" to the
// List-Unsubscribe URL. A GET (a person following the link, or a link scanner) only shows the button that POSTs.

const tokenParams = z.object({ token: z.string().max(200) });
// "List-Unsubscribe=One-Click" and room to spare; nothing else is read from the body.
const MAX_FORM_BYTES = 1024;

const pageResponses = {
  404: htmlResponse('Unknown link'),
  429: { ...htmlResponse('Too many requests from this address'), headers: retryAfterHeader },
};

const showRoute = createRoute({
  method: 'get',
  path: '/unsubscribe/surveys/{token}',
  operationId: 'getSurveyUnsubscribePage',
  tags: ['CSAT survey (customers)'],
  // Public: customers follow the link in their mail; the signed token is the credential.
  security: [],
  summary: 'The unsubscribe page behind the link of a survey mail: a button, nothing recorded',
  request: { params: tokenParams },
  responses: { 200: htmlResponse('The button that unsubscribes'), ...pageResponses },
});

const unsubscribeRoute = createRoute({
  method: 'post',
  path: '/unsubscribe/surveys/{token}',
  operationId: 'unsubscribeFromSurveys',
  tags: ['CSAT survey (customers)'],
  security: [],
  summary: 'Unsubscribe the contact from survey mail (RFC 8058 one-click, or the page’s button)',
  description: 'The contact gets no further survey mail from any channel of the account; the conversation timeline says why.',
  request: { params: tokenParams },
  responses: { 200: htmlResponse('Unsubscribed'), 413: htmlResponse('The body is larger than needed'), ...pageResponses },
});

export function surveyUnsubscribeRoutes({ db, config }: ApiDeps, perClientAddress: RateLimiter) {
  const app = new OpenAPIHono<AppEnv>();
  const clientAddress = clientAddressBehind(config.TRUSTED_PROXIES ?? []);

  function page(c: Context, language: CatalogLanguage, title: string, body: ReturnType<typeof html>, status: 200 | 404) {
    return c.html(htmlDocument(title, body, '', language), status);
  }
  const notFound = (c: Context) => page(c, 'en', 'Not found', html`<p>This link is not valid.</p>`, 404);

  /** The contact a token names with the language of their latest conversation; null for a token that is not ours. */
  async function contactOf(token: string) {
    const contactId = verifyUnsubscribeToken(token, config.SECRET_KEY);
    if (!contactId) return null;
    const contact = await db.selectFrom('contacts').select('id').where('id', '=', contactId).executeTakeFirst();
    if (!contact) return null;
    const latest = await db
      .selectFrom('conversations as c')
      .innerJoin('channels as ch', 'ch.id', 'c.channel_id')
      .select(['c.language', 'ch.languages'])
      .where('c.contact_id', '=', contactId)
      .orderBy('c.created_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return { id: contact.id, language: catalogLanguage(latest?.language, latest?.languages ?? []) };
  }

  app.use(showRoute.getRoutingPath(), async (c, next) => {
    const verdict = perClientAddress.take(clientAddress(c));
    if (verdict.allowed) return next();
    return c.html(htmlDocument('Please wait a moment', html`<p>Too many requests. Please try again later.</p>`), 429, {
      'Retry-After': String(verdict.retryAfterSeconds),
    });
  });
  app.use(
    unsubscribeRoute.getRoutingPath(),
    bodyLimit({ maxSize: MAX_FORM_BYTES, onError: (c) => c.html(htmlDocument('Too large', html`<p>Too large.</p>`), 413) }),
  );

  app.openapi(
    showRoute,
    async (c) => {
      const contact = await contactOf(c.req.valid('param').token);
      if (!contact) return notFound(c);
      const { language } = contact;
      return page(
        c,
        language,
        message(language, 'unsubscribe.confirm'),
        html`<form method="post">
          <input type="hidden" name="List-Unsubscribe" value="One-Click" />
          <button type="submit">${message(language, 'unsubscribe.button')}</button>
        </form>`,
        200,
      );
    },
    (result, c) => (result.success ? undefined : notFound(c)),
  );

  app.openapi(
    unsubscribeRoute,
    async (c) => {
      const contact = await contactOf(c.req.valid('param').token);
      if (!contact) return notFound(c);
      await db
        .updateTable('contacts')
        .set({ surveys_unsubscribed_at: new Date() })
        .where('id', '=', contact.id)
        .where('surveys_unsubscribed_at', 'is', null)
        .execute();
      const { language } = contact;
      return page(
        c,
        language,
        message(language, 'unsubscribe.title'),
        html`<p>${message(language, 'unsubscribe.done')}</p>`,
        200,
      );
    },
    (result, c) => (result.success ? undefined : notFound(c)),
  );
  return app;
}
