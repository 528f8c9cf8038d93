import { randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql, type Transaction } from 'kysely';
import type { Db } from '../../db/connection.js';
import type { Database } from '../../db/schema.js';
import type { UserRole } from '../../domain/conversation.js';
import { generateApiKey, requireAdmin } from '../auth.js';
import type { ApiDeps, AppEnv, AuthenticatedUser } from '../env.js';
import { IdempotencyHeadersSchema } from '../idempotency.js';
import { afterCursor, decodeCursor, PageQuerySchema, pageSchema, toPage } from '../pagination.js';
import { Problem, problemResponses } from '../problem.js';
import { SignatureSchema } from '../schemas/channel.js';

// The people of an account and their API keys (A2). Anyone reads the account's users; an admin adds,
// changes and removes them; everyone manages their own keys, an admin anyone's in the account.

const security = [{ apiKey: [] }];
const userParams = z.object({ userId: z.uuid() });
const keyParams = z.object({ userId: z.uuid(), keyId: z.uuid() });
const RoleSchema = z.enum(['admin', 'agent']);
// Not blank, no control characters (PostgreSQL refuses NUL in text): the pattern puts both in the OpenAPI document.
// Bodies are strict objects: an unknown field (a typo) is a 422, and the document says so (additionalProperties: false).
const nameSchema = z
  .string()
  .trim()
  .min(1)
  .max(200)
  .regex(
    // eslint-disable-next-line no-control-regex -- control characters are what it refuses (blank is refused by min(1) after trim)
    /^[^\u0000-\u001f\u007f-\u009f]*$/,
    'must not hold control characters',
  );

const UserSchema = z
  .object({
    id: z.uuid(),
    accountId: z.uuid(),
    name: z.string(),
    email: z.string(),
    role: RoleSchema,
    available: z.boolean().openapi({ description: 'Whether the agent takes new conversations' }),
    createdAt: z.iso.datetime(),
    signature: SignatureSchema.openapi({
      description: "Below this agent's replies, instead of the channel's; null fields: the channel's signature",
    }),
  })
  .openapi('User');

const ApiKeySchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    prefix: z.string().openapi({ description: 'The first characters of the key, to tell keys apart' }),
    createdAt: z.iso.datetime(),
    lastUsedAt: z.iso.datetime().nullable().openapi({ description: 'To the minute' }),
    revokedAt: z.iso.datetime().nullable(),
  })
  .openapi('ApiKey');

const NewApiKeySchema = ApiKeySchema.extend({
  key: z.string().openapi({ description: 'The key itself: shown this once, never again (only its hash is stored)' }),
}).openapi('NewApiKey');

const meRoute = createRoute({
  method: 'get',
  path: '/v1/me',
  operationId: 'getCurrentUser',
  tags: ['Users'],
  summary: 'The user the API key belongs to',
  security,
  responses: {
    200: { description: 'The caller', content: { 'application/json': { schema: UserSchema } } },
    ...problemResponses(401),
  },
});

const listRoute = createRoute({
  method: 'get',
  path: '/v1/users',
  operationId: 'listUsers',
  tags: ['Users'],
  summary: "The account's users, newest first",
  security,
  request: { query: PageQuerySchema },
  responses: {
    200: { description: 'Users', content: { 'application/json': { schema: pageSchema(UserSchema, 'UserPage') } } },
    ...problemResponses(401, 422),
  },
});

const createUserRoute = createRoute({
  method: 'post',
  path: '/v1/users',
  operationId: 'createUser',
  tags: ['Users'],
  summary: 'Add a user to the account (admins); answers their first API key, once',
  security,
  request: {
    headers: IdempotencyHeadersSchema,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .strictObject({ name: nameSchema, email: z.email({ pattern: z.regexes.html5Email }).max(254), role: RoleSchema })
            .openapi('UserInput'),
        },
      },
    },
  },
  responses: {
    201: {
      description: 'Created',
      content: {
        'application/json': {
          schema: z.object({ user: UserSchema, apiKey: NewApiKeySchema }).openapi('NewUser'),
        },
      },
    },
    ...problemResponses(400, 401, 403, 409, 413, 415, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/users/{userId}',
  operationId: 'getUser',
  tags: ['Users'],
  summary: 'One user of the account',
  security,
  request: { params: userParams },
  responses: {
    200: { description: 'The user', content: { 'application/json': { schema: UserSchema } } },
    ...problemResponses(401, 404, 422),
  },
});

const patchRoute = createRoute({
  method: 'patch',
  path: '/v1/users/{userId}',
  operationId: 'updateUser',
  tags: ['Users'],
  summary: "Change a user's name, signature or role (admins); anyone may change their own name and signature",
  description: 'The last admin of the account cannot become an agent (409).',
  security,
  request: {
    params: userParams,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .strictObject({
              name: nameSchema.optional(),
              role: RoleSchema.optional(),
              signature: SignatureSchema.partial().strict().optional(),
            })
            .refine((update) => Object.keys(update).length > 0, 'give name, signature or role')
            .openapi('UserUpdate', { minProperties: 1 }),
        },
      },
    },
  },
  responses: {
    200: { description: 'The user', content: { 'application/json': { schema: UserSchema } } },
    ...problemResponses(400, 401, 403, 404, 409, 413, 415, 422),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/users/{userId}',
  operationId: 'deleteUser',
  tags: ['Users'],
  summary: 'Remove a user from the account (admins); their API keys stop working at once',
  description:
    'Not yourself (409). While open conversations are assigned to the user the answer is 409: set them unavailable ' +
    '(PUT /v1/users/{userId}/availability) or remove them from their channels first, which hands those conversations ' +
    'to other agents, then repeat. Their past replies and resolved conversations stay, without the author.',
  security,
  request: { params: userParams },
  responses: {
    204: { description: 'Removed' },
    ...problemResponses(401, 403, 404, 409, 422),
  },
});

const listKeysRoute = createRoute({
  method: 'get',
  path: '/v1/users/{userId}/api-keys',
  operationId: 'listApiKeys',
  tags: ['Users'],
  summary: "A user's API keys, revoked ones included, newest first (yourself, or an admin for anyone)",
  description: 'Never the keys themselves: they are shown once, when created.',
  security,
  request: { params: userParams },
  responses: {
    200: {
      description: 'API keys',
      content: { 'application/json': { schema: z.object({ data: z.array(ApiKeySchema) }).openapi('ApiKeyList') } },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

const createKeyRoute = createRoute({
  method: 'post',
  path: '/v1/users/{userId}/api-keys',
  operationId: 'createApiKey',
  tags: ['Users'],
  summary: 'A new API key for a user (yourself, or an admin for anyone); the key is in this answer only',
  security,
  request: {
    params: userParams,
    headers: IdempotencyHeadersSchema,
    body: {
      required: true,
      content: { 'application/json': { schema: z.strictObject({ name: nameSchema }).openapi('ApiKeyInput') } },
    },
  },
  responses: {
    201: { description: 'Created', content: { 'application/json': { schema: NewApiKeySchema } } },
    ...problemResponses(400, 401, 403, 404, 409, 413, 415, 422),
  },
});

const revokeKeyRoute = createRoute({
  method: 'delete',
  path: '/v1/users/{userId}/api-keys/{keyId}',
  operationId: 'revokeApiKey',
  tags: ['Users'],
  summary: 'Revoke an API key (yourself, or an admin for anyone); it answers 401 from now on',
  security,
  request: { params: keyParams },
  responses: {
    204: { description: 'Revoked (also when it was revoked already)' },
    ...problemResponses(401, 403, 404, 422),
  },
});

type UserRow = {
  id: string;
  account_id: string;
  name: string;
  email: string;
  role: UserRole;
  available: boolean;
  created_at: Date;
  signature_text: string | null;
  signature_html: string | null;
};

function toUser(row: UserRow): z.infer<typeof UserSchema> {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    email: row.email,
    role: row.role,
    available: row.available,
    createdAt: row.created_at.toISOString(),
    signature: { text: row.signature_text, html: row.signature_html },
  };
}

type KeyRow = {
  id: string;
  name: string;
  key_prefix: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
};

function toApiKey(row: KeyRow): z.infer<typeof ApiKeySchema> {
  return {
    id: row.id,
    name: row.name,
    prefix: row.key_prefix,
    createdAt: row.created_at.toISOString(),
    lastUsedAt: row.last_used_at?.toISOString() ?? null,
    revokedAt: row.revoked_at?.toISOString() ?? null,
  };
}

const userColumns = [
  'id',
  'account_id',
  'name',
  'email',
  'role',
  'available',
  'created_at',
  'signature_text',
  'signature_html',
] as const;
const keyColumns = ['id', 'name', 'key_prefix', 'created_at', 'last_used_at', 'revoked_at'] as const;

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '23505';
}

/** Changes that count admins take turns per account, so two concurrent demotions cannot leave it with none. */
async function lockAccount(trx: Transaction<Database>, accountId: string) {
  await trx.selectFrom('accounts').select('id').where('id', '=', accountId).forUpdate().executeTakeFirstOrThrow();
}

async function insertKey(trx: Transaction<Database>, userId: string, name: string) {
  const { key, hash, prefix } = generateApiKey();
  const row = await trx
    .insertInto('api_keys')
    .values({ id: randomUUID(), user_id: userId, name, key_hash: hash, key_prefix: prefix })
    .returning(keyColumns)
    .executeTakeFirstOrThrow();
  return { ...toApiKey(row), key };
}

export function userRoutes({ db }: ApiDeps) {
  /** A user of the caller's account; any other id answers 404. */
  async function findUser(caller: AuthenticatedUser, userId: string, trx: Db = db) {
    const found = await trx
      .selectFrom('users')
      .select(userColumns)
      .where('id', '=', userId)
      .where('account_id', '=', caller.accountId)
      .executeTakeFirst();
    if (!found) throw new Problem(404, 'not-found', 'User not found', `no user ${userId}`);
    return found;
  }

  /** Keys are their owner's business, and an admin's. */
  async function keyOwner(caller: AuthenticatedUser, userId: string) {
    const owner = await findUser(caller, userId);
    if (owner.id !== caller.id) requireAdmin(caller, "manages another user's API keys");
    return owner;
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(meRoute, async (c) => {
    const caller = c.get('user');
    return c.json(toUser(await findUser(caller, caller.id)), 200);
  });

  app.openapi(listRoute, async (c) => {
    const { cursor, limit } = c.req.valid('query');
    const cursorId = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await db
      .selectFrom('users as u')
      .select(userColumns.map((column) => `u.${column}` as const))
      .where('u.account_id', '=', c.get('user').accountId)
      .$if(cursorId !== undefined, (q) => q.where(afterCursor('users', 'u', cursorId!)))
      .orderBy('u.created_at', 'desc')
      .orderBy('u.id', 'desc')
      .limit(limit + 1)
      .execute();
    return c.json(toPage(rows, limit, toUser), 200);
  });

  app.openapi(createUserRoute, async (c) => {
    const caller = c.get('user');
    requireAdmin(caller, 'adds users');
    const input = c.req.valid('json');
    const email = input.email.toLowerCase();
    try {
      const created = await db.transaction().execute(async (trx) => {
        const user = await trx
          .insertInto('users')
          .values({ id: randomUUID(), account_id: caller.accountId, name: input.name, email, role: input.role })
          .returning(userColumns)
          .executeTakeFirstOrThrow();
        return { user: toUser(user), apiKey: await insertKey(trx, user.id, 'default') };
      });
      return c.json(created, 201);
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      throw new Problem(409, 'conflict', 'Email taken', `a user of this account has the email ${email}`, [
        { field: 'email', message: 'already used by a user of this account' },
      ]);
    }
  });

  app.openapi(getRoute, async (c) => {
    return c.json(toUser(await findUser(c.get('user'), c.req.valid('param').userId)), 200);
  });

  app.openapi(patchRoute, async (c) => {
    const caller = c.get('user');
    const { userId } = c.req.valid('param');
    const input = c.req.valid('json');
    const updated = await db.transaction().execute(async (trx) => {
      await lockAccount(trx, caller.accountId);
      const target = await findUser(caller, userId, trx);
      const roleChanges = input.role !== undefined && input.role !== target.role;
      if (target.id !== caller.id || roleChanges)
        requireAdmin(caller, roleChanges ? 'changes roles' : "changes another user's name or signature");
      if (roleChanges && target.role === 'admin') await requireAnotherAdmin(trx, caller.accountId, target.id, 'become an agent');
      if (input.name === undefined && input.signature === undefined && !roleChanges) return target;
      return trx
        .updateTable('users')
        .set({
          ...(input.name !== undefined ? { name: input.name } : {}),
          ...(roleChanges ? { role: input.role } : {}),
          ...(input.signature?.text !== undefined ? { signature_text: input.signature.text } : {}),
          ...(input.signature?.html !== undefined ? { signature_html: input.signature.html } : {}),
        })
        .where('id', '=', target.id)
        .returning(userColumns)
        .executeTakeFirstOrThrow();
    });
    return c.json(toUser(updated), 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const caller = c.get('user');
    const { userId } = c.req.valid('param');
    await db.transaction().execute(async (trx) => {
      await lockAccount(trx, caller.accountId);
      const target = await findUser(caller, userId, trx);
      requireAdmin(caller, 'removes users');
      if (target.id === caller.id)
        throw new Problem(409, 'conflict', 'Cannot remove yourself', 'ask another admin to remove you');
      if (target.role === 'admin') await requireAnotherAdmin(trx, caller.accountId, target.id, 'be removed');
      // The assignment activities lock these channel rows too: none can hand the user a conversation meanwhile.
      await trx
        .selectFrom('channels')
        .select('id')
        .where('id', 'in', trx.selectFrom('channel_agents').select('channel_id').where('user_id', '=', target.id))
        .orderBy('id')
        .forUpdate()
        .execute();
      const open = await trx
        .selectFrom('conversations')
        .select((eb) => eb.fn.countAll<string>().as('count'))
        .where('assignee_id', '=', target.id)
        .where('status', '=', 'open')
        .executeTakeFirstOrThrow();
      if (Number(open.count) > 0) {
        throw new Problem(
          409,
          'conflict',
          'The user has open conversations',
          `${open.count} open conversation(s) are assigned to ${target.name}: set them unavailable ` +
            `(PUT /v1/users/${target.id}/availability) or remove them from their channels, then repeat`,
        );
      }
      // Their API keys, channel memberships and team memberships go with them (on delete cascade).
      await trx.deleteFrom('users').where('id', '=', target.id).execute();
    });
    return c.body(null, 204);
  });

  app.openapi(listKeysRoute, async (c) => {
    const owner = await keyOwner(c.get('user'), c.req.valid('param').userId);
    const rows = await db
      .selectFrom('api_keys')
      .select(keyColumns)
      .where('user_id', '=', owner.id)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .execute();
    return c.json({ data: rows.map(toApiKey) }, 200);
  });

  app.openapi(createKeyRoute, async (c) => {
    const owner = await keyOwner(c.get('user'), c.req.valid('param').userId);
    const { name } = c.req.valid('json');
    const created = await db.transaction().execute((trx) => insertKey(trx, owner.id, name));
    return c.json(created, 201);
  });

  app.openapi(revokeKeyRoute, async (c) => {
    const { userId, keyId } = c.req.valid('param');
    const owner = await keyOwner(c.get('user'), userId);
    const key = await db
      .updateTable('api_keys')
      .set({ revoked_at: sql<Date>`coalesce(revoked_at, now())` })
      .where('id', '=', keyId)
      .where('user_id', '=', owner.id)
      .returning('id')
      .executeTakeFirst();
    if (!key) throw new Problem(404, 'not-found', 'API key not found', `user ${owner.id} has no API key ${keyId}`);
    return c.body(null, 204);
  });

  return app;
}

/** An account always keeps an admin. */
async function requireAnotherAdmin(trx: Transaction<Database>, accountId: string, userId: string, change: string) {
  const others = await trx
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .where('account_id', '=', accountId)
    .where('role', '=', 'admin')
    .where('id', '!=', userId)
    .executeTakeFirstOrThrow();
  if (Number(others.count) === 0) {
    throw new Problem(409, 'conflict', 'Last admin', `the account's last admin cannot ${change}; make another user admin first`);
  }
}
