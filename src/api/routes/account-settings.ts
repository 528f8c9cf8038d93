import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { requireAdmin } from '../auth.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { problemResponses } from '../problem.js';

// Settings of the whole account (not of one channel): how long closed conversations are kept.

const security = [{ apiKey: [] }];

const MAX_RETENTION_DAYS = 3650;

const AccountSettingsSchema = z
  .object({
    retentionDays: z
      .number()
      .int()
      .min(1)
      .max(MAX_RETENTION_DAYS)
      .nullable()
      .openapi({
        description:
          'Closed conversations older than this many days (since they closed) are erased by the daily retention sweep, ' +
          'leaving anonymous tombstones for reports; null keeps them forever',
      }),
  })
  .openapi('AccountSettings');

const getRoute = createRoute({
  method: 'get',
  path: '/v1/account/settings',
  operationId: 'getAccountSettings',
  tags: ['Account'],
  summary: "The account's settings: how long closed conversations are kept",
  security,
  responses: {
    200: { description: 'The settings', content: { 'application/json': { schema: AccountSettingsSchema } } },
    ...problemResponses(401),
  },
});

const patchRoute = createRoute({
  method: 'patch',
  path: '/v1/account/settings',
  operationId: 'updateAccountSettings',
  tags: ['Account'],
  summary: "Change the account's settings (admins)",
  security,
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          // Strict: an unknown field (a typo) is a 422, not a 200 that changes nothing.
          schema: z.strictObject({ retentionDays: AccountSettingsSchema.shape.retentionDays }).openapi('AccountSettingsInput'),
        },
      },
    },
  },
  responses: {
    200: { description: 'Saved', content: { 'application/json': { schema: AccountSettingsSchema } } },
    ...problemResponses(400, 401, 403, 413, 415, 422),
  },
});

export function accountSettingsRoutes({ db }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();

  app.openapi(getRoute, async (c) => {
    const account = await db
      .selectFrom('accounts')
      .select('retention_days')
      .where('id', '=', c.get('user').accountId)
      .executeTakeFirstOrThrow();
    return c.json({ retentionDays: account.retention_days }, 200);
  });

  app.openapi(patchRoute, async (c) => {
    const user = c.get('user');
    requireAdmin(user, 'changes the account settings');
    const { retentionDays } = c.req.valid('json');
    const account = await db
      .updateTable('accounts')
      .set({ retention_days: retentionDays })
      .where('id', '=', user.accountId)
      .returning('retention_days')
      .executeTakeFirstOrThrow();
    return c.json({ retentionDays: account.retention_days }, 200);
  });

  return app;
}
