import { randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql, type Selectable } from 'kysely';
import type { Db } from '../../db/connection.js';
import type { WebhookDeliveriesTable, WebhookSubscriptionsTable } from '../../db/schema.js';
import { encryptCredential } from '../../security/credentials.js';
import { WEBHOOK_EVENT_TYPES } from '../../webhooks/events.js';
import { checkWebhookUrl, MAX_WEBHOOK_URL_LENGTH, WebhookUrlError } from '../../webhooks/http.js';
import { generateWebhookSecret } from '../../webhooks/signing.js';
import { requireAdmin } from '../auth.js';
import type { ApiDeps, AppEnv, AuthenticatedUser } from '../env.js';
import { IdempotencyHeadersSchema } from '../idempotency.js';
import { afterCursor, decodeCursor, PageQuerySchema, pageSchema, toPage } from '../pagination.js';
import { Problem, problemResponses } from '../problem.js';

// An account's webhook subscriptions, their deliveries and every attempt. Admins only: a subscription receives
// events of every channel of the account. Deliveries are sent by the worker (src/activities/webhooks.ts).

const security = [{ apiKey: [] }];
const tags = ['Webhooks'];
/** Subscriptions one account may have: each event is written once per subscription that wants it. */
export const MAX_WEBHOOKS_PER_ACCOUNT = 20;
/** The latest attempts listed per delivery (a day of retries is some 30). */
const ATTEMPTS_LISTED = 50;

const webhookParams = z.object({ webhookId: z.uuid() });
const deliveryParams = z.object({ webhookId: z.uuid(), deliveryId: z.uuid() });

const urlSchema = z
  .string()
  .trim()
  .min(1)
  .max(MAX_WEBHOOK_URL_LENGTH)
  .openapi({
    description:
      'https; http only to hosts inside the operator’s ALLOWED_PRIVATE_NETWORKS. No private address (unless allowed), ' +
      'no credentials, no fragment; checked when saved and again at every delivery',
    example: 'https://backend.example.com/mailroom/events',
  });
const eventsSchema = z
  .array(z.enum(WEBHOOK_EVENT_TYPES))
  .min(1)
  .max(WEBHOOK_EVENT_TYPES.length)
  .refine((events) => new Set(events).size === events.length, 'each event at most once')
  .openapi({ description: 'The events to receive' });
const descriptionSchema = z.string().trim().max(200).nullable();

const WebhookSchema = z
  .object({
    id: z.uuid(),
    url: z.string(),
    description: z.string().nullable(),
    events: z.array(z.enum(WEBHOOK_EVENT_TYPES)),
    enabled: z.boolean(),
    disabledReason: z.string().nullable().openapi({ description: 'Why it was disabled (by Mailroom after a day of failures)' }),
    disabledAt: z.iso.datetime().nullable(),
    failingSince: z.iso.datetime().nullable().openapi({ description: 'Every attempt failed since then; null while it succeeds' }),
    lastFailure: z.string().nullable().openapi({ description: 'The last failed attempt: HTTP status or error class' }),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .openapi('Webhook');

const WebhookWithSecretSchema = WebhookSchema.extend({
  secret: z.string().openapi({ description: 'The signing secret (whsec_…), shown only now' }),
}).openapi('WebhookWithSecret');

const AttemptSchema = z
  .object({
    at: z.iso.datetime(),
    statusCode: z.number().int().nullable().openapi({ description: "The receiver's HTTP status; null when it did not answer" }),
    error: z
      .string()
      .nullable()
      .openapi({ description: 'Why it failed: HTTP <status>, timeout, connection_refused, tls, destination refused: …' }),
    durationMs: z.number().int(),
  })
  .openapi('WebhookAttempt');

const DeliverySchema = z
  .object({
    id: z.uuid().openapi({ description: 'Sent as webhook-id: the same for every retry and redelivery' }),
    eventType: z.enum(WEBHOOK_EVENT_TYPES),
    conversationId: z.uuid(),
    status: z.enum(['pending', 'delivered', 'failed']).openapi({ description: 'failed: given up after the retry window' }),
    attemptCount: z.number().int(),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    retryUntil: z.iso.datetime().nullable(),
    deliveredAt: z.iso.datetime().nullable(),
    createdAt: z.iso.datetime(),
    payload: z.record(z.string(), z.unknown()).openapi({ description: 'The body as sent: { type, timestamp, data }' }),
    attempts: z.array(AttemptSchema).openapi({ description: `The latest ${ATTEMPTS_LISTED} attempts, oldest first` }),
  })
  .openapi('WebhookDelivery');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/webhooks',
  operationId: 'listWebhooks',
  tags,
  summary: "The account's webhook subscriptions, newest first (admins)",
  security,
  request: { query: PageQuerySchema },
  responses: {
    200: { description: 'Subscriptions', content: { 'application/json': { schema: pageSchema(WebhookSchema, 'WebhookPage') } } },
    ...problemResponses(401, 403, 422),
  },
});

const createWebhookRoute = createRoute({
  method: 'post',
  path: '/v1/webhooks',
  operationId: 'createWebhook',
  tags,
  summary: 'Subscribe a URL to events (admins)',
  description: `The answer carries the signing secret, shown only here. At most ${MAX_WEBHOOKS_PER_ACCOUNT} per account (409).`,
  security,
  request: {
    headers: IdempotencyHeadersSchema,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .strictObject({ url: urlSchema, events: eventsSchema, description: descriptionSchema.optional() })
            .openapi('WebhookInput'),
        },
      },
    },
  },
  responses: {
    201: { description: 'Created', content: { 'application/json': { schema: WebhookWithSecretSchema } } },
    ...problemResponses(400, 401, 403, 409, 413, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/webhooks/{webhookId}',
  operationId: 'getWebhook',
  tags,
  summary: 'One webhook subscription (admins)',
  security,
  request: { params: webhookParams },
  responses: {
    200: { description: 'The subscription', content: { 'application/json': { schema: WebhookSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

const updateRoute = createRoute({
  method: 'patch',
  path: '/v1/webhooks/{webhookId}',
  operationId: 'updateWebhook',
  tags,
  summary: 'Change the URL or events, enable or disable (admins)',
  description:
    'Enabling a disabled subscription sends what waited meanwhile, in order; events that happened while it was ' +
    'disabled are not recorded for it.',
  security,
  request: {
    params: webhookParams,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .strictObject({
              url: urlSchema.optional(),
              events: eventsSchema.optional(),
              description: descriptionSchema.optional(),
              enabled: z.boolean().optional(),
            })
            .refine((update) => Object.keys(update).length > 0, 'send at least one of: url, events, description, enabled')
            .openapi('WebhookUpdate', { minProperties: 1 }),
        },
      },
    },
  },
  responses: {
    200: { description: 'The subscription', content: { 'application/json': { schema: WebhookSchema } } },
    ...problemResponses(400, 401, 403, 404, 413, 422),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/webhooks/{webhookId}',
  operationId: 'deleteWebhook',
  tags,
  summary: 'Remove a subscription with its deliveries (admins)',
  security,
  request: { params: webhookParams },
  responses: {
    204: { description: 'Removed' },
    ...problemResponses(401, 403, 404, 422),
  },
});

const rotateRoute = createRoute({
  method: 'post',
  path: '/v1/webhooks/{webhookId}/secret',
  operationId: 'rotateWebhookSecret',
  tags,
  summary: 'Replace the signing secret (admins)',
  description: 'Every attempt from now on is signed with the new secret, shown only in this answer.',
  security,
  request: { params: webhookParams, headers: IdempotencyHeadersSchema },
  responses: {
    200: {
      description: 'The subscription with its new secret',
      content: { 'application/json': { schema: WebhookWithSecretSchema } },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

const deliveriesRoute = createRoute({
  method: 'get',
  path: '/v1/webhooks/{webhookId}/deliveries',
  operationId: 'listWebhookDeliveries',
  tags,
  summary: "A subscription's deliveries with their attempts, newest first (admins)",
  security,
  request: {
    params: webhookParams,
    query: PageQuerySchema.extend({ status: z.enum(['pending', 'delivered', 'failed']).optional() }),
  },
  responses: {
    200: {
      description: 'Deliveries',
      content: { 'application/json': { schema: pageSchema(DeliverySchema, 'WebhookDeliveryPage') } },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

const redeliverRoute = createRoute({
  method: 'post',
  path: '/v1/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver',
  operationId: 'redeliverWebhookDelivery',
  tags,
  summary: 'Send a delivery again, with the same webhook-id (admins)',
  description:
    'It goes out again in its place in the conversation’s order, retried for a new window. 409 while the ' +
    'subscription is disabled: enable it first.',
  security,
  request: { params: deliveryParams, headers: IdempotencyHeadersSchema },
  responses: {
    202: { description: 'Queued', content: { 'application/json': { schema: DeliverySchema } } },
    ...problemResponses(401, 403, 404, 409, 422),
  },
});

type SubscriptionRow = Selectable<WebhookSubscriptionsTable>;
type DeliveryRow = Selectable<WebhookDeliveriesTable>;

const iso = (date: Date | null) => (date ? date.toISOString() : null);

function toWebhook(row: SubscriptionRow) {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    events: row.events as Array<(typeof WEBHOOK_EVENT_TYPES)[number]>,
    enabled: row.enabled,
    disabledReason: row.disabled_reason,
    disabledAt: iso(row.disabled_at),
    failingSince: iso(row.failing_since),
    lastFailure: row.last_failure,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

export function webhookRoutes({ db, config }: ApiDeps) {
  const allowedPrivateNetworks = config.ALLOWED_PRIVATE_NETWORKS ?? [];

  /** The URL under the destination policy, or a 422 naming `url` with the reason. */
  async function checkedUrl(url: string): Promise<string> {
    try {
      return (await checkWebhookUrl(url, allowedPrivateNetworks)).url.href;
    } catch (error) {
      if (!(error instanceof WebhookUrlError)) throw error;
      throw new Problem(422, 'validation', 'Request validation failed', 'the URL may not be called', [
        { field: 'url', message: error.message },
      ]);
    }
  }

  async function findWebhook(trx: Db, user: AuthenticatedUser, webhookId: string, lock = false) {
    requireAdmin(user, 'manages webhooks');
    const row = await trx
      .selectFrom('webhook_subscriptions')
      .selectAll()
      .where('id', '=', webhookId)
      .where('account_id', '=', user.accountId)
      .$if(lock, (q) => q.forUpdate())
      .executeTakeFirst();
    if (!row) throw new Problem(404, 'not-found', 'Webhook not found', `no webhook ${webhookId}`);
    return row;
  }

  async function toDeliveries(rows: DeliveryRow[]) {
    const attempts =
      rows.length === 0
        ? []
        : await db
            .selectFrom('webhook_attempts as a')
            .select(['a.delivery_id', 'a.attempted_at', 'a.status_code', 'a.error', 'a.duration_ms'])
            .where(
              'a.delivery_id',
              'in',
              rows.map((row) => row.id),
            )
            // The latest ones of each delivery.
            .where(
              sql<boolean>`(select count(*) from webhook_attempts later where later.delivery_id = a.delivery_id
                and (later.attempted_at, later.id) > (a.attempted_at, a.id)) < ${ATTEMPTS_LISTED}`,
            )
            .orderBy('a.attempted_at')
            .orderBy('a.id')
            .execute();
    return rows.map((row) => ({
      id: row.id,
      eventType: row.event_type as (typeof WEBHOOK_EVENT_TYPES)[number],
      conversationId: row.conversation_id,
      status: row.status,
      attemptCount: row.attempts,
      lastStatusCode: row.last_status_code,
      lastError: row.last_error,
      retryUntil: iso(row.retry_until),
      deliveredAt: iso(row.delivered_at),
      createdAt: row.created_at.toISOString(),
      payload: row.payload,
      attempts: attempts
        .filter((attempt) => attempt.delivery_id === row.id)
        .map((attempt) => ({
          at: attempt.attempted_at.toISOString(),
          statusCode: attempt.status_code,
          error: attempt.error,
          durationMs: attempt.duration_ms,
        })),
    }));
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(listRoute, async (c) => {
    const user = c.get('user');
    requireAdmin(user, 'manages webhooks');
    const { cursor, limit } = c.req.valid('query');
    const cursorId = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await db
      .selectFrom('webhook_subscriptions as w')
      .selectAll('w')
      .where('w.account_id', '=', user.accountId)
      .$if(cursorId !== undefined, (q) => q.where(afterCursor('webhook_subscriptions', 'w', cursorId!)))
      .orderBy('w.created_at', 'desc')
      .orderBy('w.id', 'desc')
      .limit(limit + 1)
      .execute();
    return c.json(toPage(rows, limit, toWebhook), 200);
  });

  app.openapi(createWebhookRoute, async (c) => {
    const user = c.get('user');
    requireAdmin(user, 'manages webhooks');
    const input = c.req.valid('json');
    const url = await checkedUrl(input.url);
    const secret = generateWebhookSecret();
    const row = await db.transaction().execute(async (trx) => {
      // The account's row lock counts the subscriptions of two creates at once one after the other.
      await trx.selectFrom('accounts').select('id').where('id', '=', user.accountId).forUpdate().execute();
      const { count } = await trx
        .selectFrom('webhook_subscriptions')
        .select((eb) => eb.fn.countAll<string>().as('count'))
        .where('account_id', '=', user.accountId)
        .executeTakeFirstOrThrow();
      if (Number(count) >= MAX_WEBHOOKS_PER_ACCOUNT) {
        throw new Problem(
          409,
          'webhook-limit',
          'Too many webhooks',
          `an account has at most ${MAX_WEBHOOKS_PER_ACCOUNT} webhooks; remove one first`,
        );
      }
      return trx
        .insertInto('webhook_subscriptions')
        .values({
          id: randomUUID(),
          account_id: user.accountId,
          url,
          description: input.description ?? null,
          events: JSON.stringify(input.events),
          secret_encrypted: encryptCredential(secret, config.SECRET_KEY),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
    });
    return c.json({ ...toWebhook(row), secret }, 201);
  });

  app.openapi(getRoute, async (c) => {
    const row = await findWebhook(db, c.get('user'), c.req.valid('param').webhookId);
    return c.json(toWebhook(row), 200);
  });

  app.openapi(updateRoute, async (c) => {
    const user = c.get('user');
    const { webhookId } = c.req.valid('param');
    const input = c.req.valid('json');
    await findWebhook(db, user, webhookId);
    const url = input.url === undefined ? undefined : await checkedUrl(input.url);
    const row = await db.transaction().execute(async (trx) => {
      const current = await findWebhook(trx, user, webhookId, true);
      const enabling = input.enabled === true && !current.enabled;
      const updated = await trx
        .updateTable('webhook_subscriptions')
        .set({
          ...(url === undefined ? {} : { url }),
          ...(input.events === undefined ? {} : { events: JSON.stringify(input.events) }),
          ...(input.description === undefined ? {} : { description: input.description }),
          ...(input.enabled === undefined ? {} : { enabled: input.enabled }),
          // Enabled again: it starts with a clean record; disabled by hand: no reason but the admin's.
          ...(input.enabled === undefined
            ? {}
            : {
                disabled_reason: null,
                disabled_at: input.enabled ? null : sql<Date>`now()`,
                failing_since: null,
                last_failure: null,
                next_attempt_at: null,
              }),
          updated_at: sql<Date>`now()`,
        })
        .where('id', '=', current.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      // What waited while it was disabled goes out now: the dispatcher hands these to their lanes.
      if (enabling) {
        await trx
          .updateTable('webhook_deliveries')
          .set({ dispatched_until: null })
          .where('subscription_id', '=', current.id)
          .where('status', '=', 'pending')
          .execute();
      }
      return updated;
    });
    return c.json(toWebhook(row), 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const row = await findWebhook(db, c.get('user'), c.req.valid('param').webhookId);
    // Its deliveries and attempts go with it; a lane at work finds nothing more to send.
    await db.deleteFrom('webhook_subscriptions').where('id', '=', row.id).execute();
    return c.body(null, 204);
  });

  app.openapi(rotateRoute, async (c) => {
    const current = await findWebhook(db, c.get('user'), c.req.valid('param').webhookId);
    const secret = generateWebhookSecret();
    const row = await db
      .updateTable('webhook_subscriptions')
      .set({ secret_encrypted: encryptCredential(secret, config.SECRET_KEY), updated_at: sql<Date>`now()` })
      .where('id', '=', current.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return c.json({ ...toWebhook(row), secret }, 200);
  });

  app.openapi(deliveriesRoute, async (c) => {
    const webhook = await findWebhook(db, c.get('user'), c.req.valid('param').webhookId);
    const { cursor, limit, status } = c.req.valid('query');
    const cursorId = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await db
      .selectFrom('webhook_deliveries as d')
      .selectAll('d')
      .where('d.subscription_id', '=', webhook.id)
      .$if(status !== undefined, (q) => q.where('d.status', '=', status!))
      .$if(cursorId !== undefined, (q) => q.where(afterCursor('webhook_deliveries', 'd', cursorId!)))
      .orderBy('d.created_at', 'desc')
      .orderBy('d.id', 'desc')
      .limit(limit + 1)
      .execute();
    const page = toPage(rows, limit, (row) => row);
    return c.json({ data: await toDeliveries(page.data), nextCursor: page.nextCursor }, 200);
  });

  app.openapi(redeliverRoute, async (c) => {
    const { webhookId, deliveryId } = c.req.valid('param');
    const webhook = await findWebhook(db, c.get('user'), webhookId);
    if (!webhook.enabled) {
      throw new Problem(409, 'webhook-disabled', 'The webhook is disabled', 'enable it first (PATCH with enabled: true)');
    }
    const row = await db
      .updateTable('webhook_deliveries')
      .set({ status: 'pending', retry_until: null, dispatched_until: null, delivered_at: null })
      .where('id', '=', deliveryId)
      .where('subscription_id', '=', webhook.id)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new Problem(404, 'not-found', 'Delivery not found', `no delivery ${deliveryId} of this webhook`);
    return c.json((await toDeliveries([row]))[0]!, 202);
  });

  return app;
}
