import { OpenAPIHono } from '@hono/zod-openapi';
import { swaggerUI } from '@hono/swagger-ui';
import { HTTPException } from 'hono/http-exception';
import { bodyLimit } from 'hono/body-limit';
import { every, except } from 'hono/combine';
import { getConnInfo } from '@hono/node-server/conninfo';
import { InvalidRecipientError } from '../mail/compose.js';
import { METRICS_CONTENT_TYPE, mayScrape, metricsText, SCRAPE_REFUSED } from '../observability/metrics-endpoint.js';
import { ConversationStateError, WorkflowsUnavailableError } from '../temporal/gateway.js';
import { loopbackOrApiKey, requireApiKey } from './auth.js';
import { CODEC_PATH, codecAccess, codecRoutes } from './routes/codec.js';
import { enforceContract } from './contract.js';
import { idempotency } from './idempotency.js';
import { rejectNul } from './storable-text.js';
import type { ApiDeps, AppEnv } from './env.js';
import { Problem, problemResponse } from './problem.js';
import { createRateLimits, documentApiKeyRateLimit } from './rate-limit.js';
import { agentRoutes } from './routes/agents.js';
import { aiAgentRoutes } from './routes/ai-agents.js';
import { channelRoutes } from './routes/channels.js';
import { channelHealthRoutes } from './routes/channel-health.js';
import { readinessRoutes } from './routes/readiness.js';
import { channelSmtpRoutes } from './routes/channel-smtp.js';
import { contactRoutes } from './routes/contacts.js';
import { contactErasureRoutes } from './routes/contact-erasure.js';
import { accountSettingsRoutes } from './routes/account-settings.js';
import { knowledgeArticleRoutes } from './routes/knowledge-articles.js';
import { replyPreviewRoutes } from './routes/reply-preview.js';
import { REPLY_UPLOAD_PATH, replyAttachmentRoutes } from './routes/reply-attachments.js';
import { conversationParticipantRoutes } from './routes/conversation-participants.js';
import { replyTimingRoutes } from './routes/reply-timing.js';
import { routingRuleRoutes } from './routes/routing-rules.js';
import { teamRoutes } from './routes/teams.js';
import { userRoutes } from './routes/users.js';
import { formConversationRoutes } from './routes/web-form.js';
import { capturedMailRoutes } from './routes/captured-mail.js';
import { conversationRoutes } from './routes/conversations.js';
import { csatRoutes } from './routes/csat.js';
import { inboundMessageRoutes } from './routes/inbound-messages.js';
import { forwardingConfirmationRoutes } from './routes/forwarding-confirmations.js';
import { inboundRoutes } from './routes/inbound.js';
import { mailboxRoutes } from './routes/mailboxes.js';
import { mailboxOAuthRoutes, oauthCallbackRoutes } from './routes/mailbox-oauth.js';
import { mailboxImportRoutes } from './routes/mailbox-imports.js';
import { reportRoutes } from './routes/reports.js';
import { automaticMailPreviewRoutes } from './routes/automatic-mail-preview.js';
import { conversationLanguageRoutes } from './routes/conversation-language.js';
import { surveyUnsubscribeRoutes } from './routes/survey-unsubscribe.js';
import { webhookRoutes } from './routes/webhooks.js';
import { registerWebhookEvents } from './schemas/webhook-events.js';

export const OPENAPI_PATH = '/openapi.json';
/** Largest JSON body of any /v1 route but the forwarder's (which takes raw mail up to MAX_INBOUND_BYTES). */
export const MAX_JSON_BYTES = 1024 * 1024;

/** The HTTP API: forwarders, backend services, customers' survey pages, and its own OpenAPI document. */
export function createApp(deps: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>({
    // Invalid input is answered once, here: 422 naming each field.
    defaultHook: (result) => {
      if (result.success) return;
      const errors = result.error.issues.map((issue) => ({
        field: issue.path.join('.') || result.target,
        message: issue.message,
      }));
      throw new Problem(422, 'validation', 'Request validation failed', `invalid ${result.target}`, errors);
    },
  });

  app.openAPIRegistry.registerComponent('securitySchemes', 'apiKey', {
    type: 'http',
    scheme: 'bearer',
    description: 'A user API key (mr_...)',
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'channelSecret', {
    type: 'http',
    scheme: 'bearer',
    description: 'The channel forwarder secret',
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'channelSecretBasic', {
    type: 'http',
    scheme: 'basic',
    description: 'Any user name, the channel forwarder secret as password',
  });

  app.get('/health', (c) => c.json({ status: 'ok' }));
  // Prometheus' scrape: ops data, not part of the client contract (left out of the OpenAPI document).
  app.get('/metrics', async (c) => {
    if (!mayScrape(getConnInfo(c).remote.address, c.req.header('authorization'), deps.config.METRICS_TOKEN)) {
      throw new Problem(403, 'forbidden', 'Metrics are not served to this client', SCRAPE_REFUSED);
    }
    return c.body(await metricsText(deps.db), 200, { 'content-type': METRICS_CONTENT_TYPE });
  });
  app.route('/', readinessRoutes(deps));

  // Per API process, in memory: N processes allow N times each rate.
  const rateLimits = createRateLimits(deps.config, deps.clock);
  app.route('/', inboundRoutes(deps, rateLimits.inboundPerChannel));
  app.route('/', csatRoutes(deps, rateLimits.surveyPerClientAddress));
  app.route('/', surveyUnsubscribeRoutes(deps, rateLimits.surveyPerClientAddress));
  // The provider's redirect of an admin's browser, before the API key check: the state is its credential.
  app.route('/', oauthCallbackRoutes(deps));
  const apiKey = requireApiKey(deps.db, rateLimits.perApiKey);
  // The development capture holds every mail sent: for a browser on this machine, or with an API key.
  if (deps.capture) app.route('/', capturedMailRoutes(deps.capture, loopbackOrApiKey(apiKey)));
  // Everything else under /v1 but the forwarder's inbound endpoint (channel secret) needs a user's API key;
  // JSON bodies are small, and creating or sending POSTs honour Idempotency-Key.
  const jsonLimit = bodyLimit({
    maxSize: MAX_JSON_BYTES,
    onError: () => {
      throw new Problem(413, 'too-large', 'Request body too large', `the limit is ${MAX_JSON_BYTES} bytes`);
    },
  });
  const idempotent = idempotency(deps.db, deps.config.SECRET_KEY);
  const contract = enforceContract(app);
  app.use(
    '/v1/*',
    except(
      ['/v1/channels/:channelId/inbound', '/v1/captured-mail', '/v1/channels/:channelId/imports', REPLY_UPLOAD_PATH],
      every(jsonLimit, apiKey, contract.checkMethodAndBody, rejectNul, idempotent),
    ),
  );
  // The codec server of the Temporal UI and CLI: CORS for the UI's origin, then an admin's API key.
  app.use(`${CODEC_PATH}/*`, codecAccess(deps, apiKey, loopbackOrApiKey), contract.checkMethodAndBody);
  app.route('/', codecRoutes(deps));
  // Mailbox exports are uploaded as they are, streamed to the database up to their own limit (MAX_IMPORT_BYTES).
  app.use('/v1/channels/:channelId/imports', every(apiKey, contract.checkMethodAndBody));
  // Reply attachments are streamed to the database up to the channel's own limit (limits.maxAttachmentBytes).
  app.use(REPLY_UPLOAD_PATH, every(apiKey, contract.checkMethodAndBody));
  app.route('/', channelRoutes(deps));
  app.route('/', channelSmtpRoutes(deps));
  app.route('/', channelHealthRoutes(deps));
  app.route('/', mailboxRoutes(deps));
  app.route('/', mailboxOAuthRoutes(deps));
  app.route('/', mailboxImportRoutes(deps));
  app.route('/', agentRoutes(deps));
  app.route('/', aiAgentRoutes(deps));
  app.route('/', knowledgeArticleRoutes(deps));
  app.route('/', routingRuleRoutes(deps));
  app.route('/', teamRoutes(deps));
  app.route('/', userRoutes(deps));
  app.route('/', conversationRoutes(deps));
  app.route('/', formConversationRoutes(deps));
  app.route('/', replyPreviewRoutes(deps));
  app.route('/', replyAttachmentRoutes(deps));
  app.route('/', conversationParticipantRoutes(deps));
  app.route('/', replyTimingRoutes(deps));
  app.route('/', conversationLanguageRoutes(deps));
  app.route('/', automaticMailPreviewRoutes(deps));
  app.route('/', contactRoutes(deps));
  app.route('/', contactErasureRoutes(deps));
  app.route('/', accountSettingsRoutes(deps));
  app.route('/', inboundMessageRoutes(deps));
  app.route('/', forwardingConfirmationRoutes(deps));
  app.route('/', reportRoutes(deps));
  app.route('/', webhookRoutes(deps));
  // The events subscribers receive, with their payloads: the document's `webhooks` section.
  registerWebhookEvents(app.openAPIRegistry);

  app.doc31(OPENAPI_PATH, {
    openapi: '3.1.0',
    info: {
      title: 'Mailroom API',
      version: '0.1.0',
      description:
        'The email channel of a support inbox: inbound mail, conversations, replies, CSAT. ' +
        'Errors are application/problem+json. Lists are cursor-paginated. No text may contain U+0000 (422 naming the field).',
      license: { name: 'MIT', url: 'https://spdx.org/licenses/MIT.html' },
    },
    // Where this deployment answers, so clients generated from the document know their base URL.
    servers: [{ url: withoutTrailingSlashes(deps.config.PUBLIC_URL), description: 'This Mailroom deployment (PUBLIC_URL)' }],
  });
  app.get('/docs', swaggerUI({ url: OPENAPI_PATH }));

  contract.documentProblems();
  documentApiKeyRateLimit(app);
  app.notFound((c) =>
    problemResponse(
      c,
      contract.methodNotAllowed(c.req.method, c.req.path) ??
        new Problem(404, 'not-found', 'Not found', `no route ${c.req.method} ${c.req.path}`),
    ),
  );
  app.onError((error, c) => {
    if (error instanceof Problem) return problemResponse(c, error);
    if (error instanceof ConversationStateError) {
      const title = error.type === 'Ended' ? 'The conversation is closed' : 'The conversation cannot do that now';
      return problemResponse(c, new Problem(409, 'conversation-state', title, error.message));
    }
    if (error instanceof WorkflowsUnavailableError) {
      return problemResponse(
        c,
        new Problem(
          503,
          'workflows-unavailable',
          'Workflows are unavailable',
          error.whenAway ?? 'Temporal did not answer; retry later',
        ),
      );
    }
    if (error instanceof InvalidRecipientError) {
      return problemResponse(c, new Problem(409, 'invalid-recipient', 'The contact’s address cannot be mailed', error.message));
    }
    if (error instanceof HTTPException && error.status < 500) {
      return problemResponse(c, new Problem(error.status, 'bad-request', error.message || 'Bad request'));
    }
    deps.logger.error({ err: error, path: c.req.path }, 'request failed');
    return problemResponse(c, new Problem(500, 'internal', 'Internal error', 'the error was logged'));
  });

  return app;
}

/** `https://help.example.com/` → `https://help.example.com`, so that the document's paths join it with one slash. */
function withoutTrailingSlashes(url: string): string {
  let end = url.length;
  while (end > 0 && url[end - 1] === '/') end--;
  return url.slice(0, end);
}

export type App = ReturnType<typeof createApp>;
