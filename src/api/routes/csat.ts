import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { recordCsatRating } from '../../activities/conversation.js';
import { htmlDocument, htmlResponse } from '../html-document.js';
import { verifyCsatToken } from '../../domain/csat-token.js';
import { catalogLanguage, message, type CatalogLanguage } from '../../domain/message-catalogs.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { retryAfterHeader } from '../problem.js';
import { clientAddressBehind, type RateLimiter } from '../rate-limit.js';

// The customer's side of the survey: a page that shows the form, and the form's submit.
// Only the submit records a rating, so mail scanners that follow links cast nothing.

// No token is longer: a longer one (a mangled link) is answered like any unknown one, with the 404 page.
const tokenParams = z.object({ token: z.string().max(200) });
const tooManyRequestsPage = {
  ...htmlResponse('Too many requests from this address; try again after Retry-After seconds'),
  headers: retryAfterHeader,
};

// A rating and a 2,000-character comment, url-encoded (up to 9 bytes a character), with room to spare.
const MAX_FORM_BYTES = 32 * 1024;

const RatingFormSchema = z.object({
  rating: z.coerce.number().int().min(1, 'choose a rating from 1 to 5').max(5, 'choose a rating from 1 to 5'),
  comment: z.string().trim().max(2000, 'the comment is limited to 2000 characters').optional(),
});

const showRoute = createRoute({
  method: 'get',
  path: '/csat/{token}',
  operationId: 'getSurveyPage',
  tags: ['CSAT survey (customers)'],
  // Public: customers follow the link in their mail; the signed token is the credential.
  security: [],
  summary: 'The survey page behind the links in the survey mail',
  description:
    "In the conversation's language. `rating` (one link per rating in the mail) chooses it on the form; only the form's POST records it.",
  request: {
    params: tokenParams,
    query: z.object({ rating: z.string().max(10).optional().openapi({ description: 'The rating to show chosen, 1 to 5' }) }),
  },
  responses: {
    200: htmlResponse('The rating form'),
    404: htmlResponse('Unknown link'),
    410: htmlResponse('The link has expired'),
    429: tooManyRequestsPage,
  },
});

const submitRoute = createRoute({
  method: 'post',
  path: '/csat/{token}',
  operationId: 'submitSurveyRating',
  tags: ['CSAT survey (customers)'],
  security: [],
  summary: 'Submit (or change) the rating',
  request: {
    params: tokenParams,
    body: { required: true, content: { 'application/x-www-form-urlencoded': { schema: RatingFormSchema } } },
  },
  responses: {
    200: htmlResponse('Thank-you page'),
    404: htmlResponse('Unknown link'),
    410: htmlResponse('The link has expired'),
    413: htmlResponse('The form is larger than any rating needs'),
    422: htmlResponse('The form again, with what to correct'),
    429: tooManyRequestsPage,
    503: htmlResponse('Try again later'),
  },
});

// The rating form's own look, beside the common page's.
const RATING_STYLE = `
fieldset {
  border: 0;
  padding: 0;
  display: flex;
  gap: 0.5rem;
}
label.star {
  border: 1px solid #cbd2d9;
  border-radius: 0.5rem;
  padding: 0.6rem 0.9rem;
  cursor: pointer;
}
label.star:has(input:checked) {
  background: #2563eb;
  color: white;
  border-color: #2563eb;
}
label.star input {
  position: absolute;
  opacity: 0;
}
textarea {
  width: 100%;
  min-height: 6rem;
  margin-top: 1rem;
}
button {
  margin-top: 1rem;
  padding: 0.6rem 1.2rem;
  border: 0;
  border-radius: 0.5rem;
  background: #2563eb;
  color: white;
  font-size: 1rem;
}
.error {
  color: #b91c1c;
}
`;

function page(title: string, body: HtmlEscapedString | Promise<HtmlEscapedString>, language: CatalogLanguage = 'en') {
  return htmlDocument(title, body, RATING_STYLE, language);
}

/** The page for a link that is not (or no longer) a survey's: a wrong, mangled or overlong token. */
function notFoundPage(c: Context) {
  return c.html(page('Survey not found', html`<p>This link is not valid.</p>`), 404);
}

function ratingForm(
  token: string,
  current: { rating: number | null; comment: string | null },
  language: CatalogLanguage,
  error?: string,
) {
  const stars = [1, 2, 3, 4, 5].map(
    (n) =>
      html`<label class="star"
        ><input type="radio" name="rating" value="${n}" ${current.rating === n ? 'checked' : ''} required />${n}</label
      >`,
  );
  return page(
    message(language, 'page.title'),
    html`${error ? html`<p class="error">${error}</p>` : ''}
      <form method="post" action="/csat/${token}">
        <p>${message(language, 'page.scale')}</p>
        <fieldset>${stars}</fieldset>
        <label for="comment">${message(language, 'page.comment')}</label>
        <textarea id="comment" name="comment" maxlength="2000">${current.comment ?? ''}</textarea>
        <button type="submit">${message(language, 'page.submit')}</button>
      </form>`,
    language,
  );
}

export function csatRoutes({ db, config, logger }: ApiDeps, perClientAddress: RateLimiter) {
  /** The survey behind a token, or the page that explains why there is none. */
  async function surveyFor(c: Context, token: string) {
    const check = verifyCsatToken(token, config.SECRET_KEY);
    if (!check.ok && check.reason === 'expired') {
      return { page: c.html(page('This survey has closed', html`<p>The link has expired. Thank you all the same.</p>`), 410) };
    }
    const survey = check.ok
      ? await db
          .selectFrom('csat_surveys')
          .selectAll()
          .where('id', '=', check.claims.surveyId)
          // An erased conversation's survey is no longer anyone's to answer.
          .where((eb) =>
            eb.not(
              eb.exists(
                eb
                  .selectFrom('conversations')
                  .select('conversations.id')
                  .whereRef('conversations.id', '=', 'csat_surveys.conversation_id')
                  .where('conversations.erased_at', 'is not', null),
              ),
            ),
          )
          .executeTakeFirst()
      : undefined;
    if (!survey) return { page: notFoundPage(c) };
    return { survey, language: await languageOf(survey.conversation_id) };
  }

  /** The conversation's language as the page speaks it (the channel's first when none was detected or set). */
  async function languageOf(conversationId: string): Promise<CatalogLanguage> {
    const row = await db
      .selectFrom('conversations as c')
      .innerJoin('channels as ch', 'ch.id', 'c.channel_id')
      .select(['c.language', 'ch.languages'])
      .where('c.id', '=', conversationId)
      .executeTakeFirst();
    return catalogLanguage(row?.language, row?.languages ?? []);
  }

  const app = new OpenAPIHono<AppEnv>();
  // The survey is public: each client address gets so many page views and submits a minute, counted first.
  const clientAddress = clientAddressBehind(config.TRUSTED_PROXIES ?? []);
  app.use(showRoute.getRoutingPath(), async (c, next) => {
    const verdict = perClientAddress.take(clientAddress(c));
    if (verdict.allowed) return next();
    const seconds = verdict.retryAfterSeconds;
    return c.html(
      page('Please wait a moment', html`<p>Too many requests from your address. Please try again in ${seconds} seconds.</p>`),
      429,
      { 'Retry-After': String(seconds) },
    );
  });
  // A body is read only up to the size a rating can have, whatever Content-Length claims.
  app.use(
    submitRoute.getRoutingPath(),
    bodyLimit({
      maxSize: MAX_FORM_BYTES,
      onError: (c) => c.html(page('Too large', html`<p>The form is larger than a rating can be.</p>`), 413),
    }),
  );

  app.openapi(
    showRoute,
    async (c) => {
      const { token } = c.req.valid('param');
      const found = await surveyFor(c, token);
      if (!found.survey) return found.page;
      // A rating link of the mail chooses its rating on the form; recorded only when the customer sends it.
      const chosen = Number(c.req.valid('query').rating);
      const rating = Number.isInteger(chosen) && chosen >= 1 && chosen <= 5 ? chosen : found.survey.rating;
      return c.html(ratingForm(token, { rating, comment: found.survey.comment }, found.language), 200);
    },
    // The only invalid parameter is an overlong token: a customer sees the page, not problem+json.
    (result, c) => (result.success ? undefined : notFoundPage(c)),
  );

  app.openapi(
    submitRoute,
    async (c) => {
      const { token } = c.req.valid('param');
      const { rating, comment } = c.req.valid('form');
      const found = await surveyFor(c, token);
      if (!found.survey) return found.page;
      // Stored here, not by the conversation's workflow: a rating changes nothing in its course.
      let recorded: boolean;
      try {
        recorded = await recordCsatRating(db, {
          conversationId: found.survey.conversation_id,
          surveyId: found.survey.id,
          rating,
          comment: comment || null,
        });
      } catch (error) {
        logger.warn({ err: error, surveyId: found.survey.id }, 'CSAT rating not stored');
        const { language } = found;
        return c.html(
          page(message(language, 'page.retry.title'), html`<p>${message(language, 'page.retry.text')}</p>`, language),
          503,
        );
      }
      if (!recorded) return notFoundPage(c); // erased meanwhile
      return c.html(
        page(
          message(found.language, 'page.thanks'),
          html`<p>${message(found.language, 'page.recorded', { rating })}</p>`,
          found.language,
        ),
        200,
      );
    },
    (result, c) => {
      if (result.success) return;
      if (result.target === 'param') return notFoundPage(c);
      const message = result.error.issues[0]?.message ?? 'the form is incomplete';
      return c.html(ratingForm(c.req.param('token') ?? '', { rating: null, comment: null }, 'en', message), 422);
    },
  );

  return app;
}
