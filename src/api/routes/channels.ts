import { randomBytes, randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import type { Channel } from '../../db/schema.js';
import { hashSecret } from '../../security/secret-hash.js';
import { applyMailboxSettings } from '../../temporal/mailbox.js';
import { accessibleChannelIds, findChannel } from '../access.js';
import { requestRebalance } from '../../temporal/assignment-queue.js';
import { requireAdmin } from '../auth.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { IdempotencyHeadersSchema } from '../idempotency.js';
import { afterCursor, decodeCursor, PageQuerySchema, pageSchema, toPage } from '../pagination.js';
import { Problem, problemResponses } from '../problem.js';
import {
  ChannelCreateInput,
  ChannelPatchInput,
  ChannelSchema,
  ChannelWithSecretSchema,
  type ChannelSettingsInput,
  forwardingAddressOf,
  settingsColumns,
  toChannel,
} from '../schemas/channel.js';

// Channels (C1–C8, A8): settings, removal, the forwarder secret and the forwarding address.
// Everyone of the channel reads it; only admins change it.

const security = [{ apiKey: [] }];
const tags = ['Channels'];
const channelParams = z.object({ channelId: z.uuid() });
const json = <T extends z.ZodType>(schema: T) => ({ 'application/json': { schema } });

const listRoute = createRoute({
  method: 'get',
  path: '/v1/channels',
  operationId: 'listChannels',
  tags,
  summary: 'The channels the caller may see, newest first: all of the account for an admin, their own for an agent',
  security,
  request: { query: PageQuerySchema },
  responses: {
    200: { description: 'One page of channels', content: json(pageSchema(ChannelSchema, 'ChannelPage')) },
    ...problemResponses(401, 422),
  },
});

const createChannelRoute = createRoute({
  method: 'post',
  path: '/v1/channels',
  operationId: 'createChannel',
  tags,
  summary: 'Create a channel (admins)',
  description: 'Settings left out take their defaults. The answer holds the forwarder secret, which is not shown again.',
  security,
  request: { headers: IdempotencyHeadersSchema, body: { required: true, content: json(ChannelCreateInput) } },
  responses: {
    201: { description: 'Created', content: json(ChannelWithSecretSchema) },
    ...problemResponses(401, 403, 409, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}',
  operationId: 'getChannel',
  tags,
  summary: 'One channel with all its settings',
  security,
  request: { params: channelParams },
  responses: {
    200: { description: 'The channel', content: json(ChannelSchema) },
    ...problemResponses(401, 403, 404, 422),
  },
});

const patchRoute = createRoute({
  method: 'patch',
  path: '/v1/channels/{channelId}',
  operationId: 'updateChannel',
  tags,
  summary: 'Change settings (admins)',
  description:
    'Only the fields given change; a settings group given replaces only its own fields given. Running conversations use the ' +
    'new settings from their next step on; more agent capacity or another assignment strategy serves queued conversations at once.',
  security,
  request: { params: channelParams, body: { required: true, content: json(ChannelPatchInput) } },
  responses: {
    200: { description: 'The changed channel', content: json(ChannelSchema) },
    ...problemResponses(401, 403, 404, 422, 503),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/channels/{channelId}',
  operationId: 'deleteChannel',
  tags,
  summary: 'Remove a channel (admins)',
  description:
    'The channel takes no more mail, its IMAP mailbox stops, and it leaves every list; its conversations are kept. ' +
    'Its forwarding address stays reserved.',
  security,
  request: { params: channelParams },
  responses: {
    204: { description: 'Removed' },
    ...problemResponses(401, 403, 404, 422),
  },
});

const rotateSecretRoute = createRoute({
  method: 'post',
  path: '/v1/channels/{channelId}/forwarder-secret',
  operationId: 'rotateForwarderSecret',
  tags,
  summary: 'Replace the forwarder secret (admins); the old one stops working at once',
  security,
  request: { params: channelParams },
  responses: {
    200: {
      description: 'The new secret, shown this once',
      content: json(z.object({ forwarderSecret: z.string() }).openapi('ForwarderSecret')),
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

const ForwardingAddressInput = z
  .object({
    username: z
      .string()
      .trim()
      .toLowerCase()
      .regex(
        /^(?=.{1,64}$)[a-z0-9_-]+(\.[a-z0-9_-]+)*$/,
        'a mailbox name: 1–64 lower-case letters, digits, ".", "_" or "-", not starting or ending with a dot',
      )
      .openapi({ example: 'support' }),
    subdomain: z
      .string()
      .trim()
      .toLowerCase()
      .regex(
        /^(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?$/,
        'a DNS label: 1–63 lower-case letters, digits or "-", not starting or ending with "-"',
      )
      .openapi({ example: 'acme' }),
  })
  .openapi('ForwardingAddressInput');

const ForwardingAddressSchema = z
  .object({
    forwardingAddress: z.string().openapi({ example: 'support@acme.inbound.mailroom.dev' }),
    username: z.string(),
    subdomain: z.string(),
  })
  .openapi('ForwardingAddress');

const forwardingAddressRoute = createRoute({
  method: 'put',
  path: '/v1/channels/{channelId}/forwarding-address',
  operationId: 'setForwardingAddress',
  tags,
  summary: 'Set the forwarding address username@subdomain.<inbound domain> (admins); it cannot be changed afterwards',
  description:
    'Setting the same address again answers 200. Another address once one is set is refused with 409 ' +
    '`forwarding-address-immutable`: mail servers forward to it. An address another channel has is refused with 409 too.',
  security,
  request: { params: channelParams, body: { required: true, content: json(ForwardingAddressInput) } },
  responses: {
    200: { description: 'The forwarding address', content: json(ForwardingAddressSchema) },
    ...problemResponses(401, 403, 404, 409, 422),
  },
});

function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505';
}

/**
 * More capacity or another strategy can serve conversations waiting in the queue. A repeat of the same
 * values counts too, so that repeating a request after a 503 still reaches the queue.
 */
function assignmentLoosened(input: ChannelSettingsInput, before: Channel, after: Channel): boolean {
  if (input.assignment?.strategy === undefined && input.assignment?.defaultAgentCapacity === undefined) return false;
  if (before.assignment_strategy !== after.assignment_strategy) return true;
  const capacity = (c: Channel) => c.default_agent_capacity ?? Number.POSITIVE_INFINITY;
  return capacity(after) >= capacity(before);
}

export function channelRoutes({ db, temporal, config, logger, taskQueue }: ApiDeps) {
  const inboundDomain = config.INBOUND_DOMAIN;
  const newSecret = () => randomBytes(24).toString('base64url');

  async function tellMailbox(channel: Channel) {
    await applyMailboxSettings(temporal, channel, taskQueue);
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(listRoute, async (c) => {
    const { cursor, limit } = c.req.valid('query');
    const user = c.get('user');
    const rows = await db
      .selectFrom('channels as ch')
      .selectAll('ch')
      .where('ch.id', 'in', accessibleChannelIds(db, user))
      .$if(cursor !== undefined, (q) => q.where(afterCursor('channels', 'ch', decodeCursor(cursor!))))
      .orderBy('ch.created_at', 'desc')
      .orderBy('ch.id', 'desc')
      .limit(limit + 1)
      .execute();
    return c.json(
      toPage(rows, limit, (row) => toChannel(row, inboundDomain)),
      200,
    );
  });

  app.openapi(createChannelRoute, async (c) => {
    const user = c.get('user');
    requireAdmin(user, 'creates a channel');
    const input = c.req.valid('json');
    const forwarderSecret = newSecret();
    const created = await db.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto('channels')
        .values({
          id: randomUUID(),
          account_id: user.accountId,
          name: input.name,
          email_address: input.emailAddress,
          forwarder_secret_hash: hashSecret(forwarderSecret),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      const columns = settingsColumns(input, inserted);
      return trx.updateTable('channels').set(columns).where('id', '=', inserted.id).returningAll().executeTakeFirstOrThrow();
    });
    return c.json({ ...toChannel(created, inboundDomain), forwarderSecret }, 201);
  });

  app.openapi(getRoute, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'work');
    return c.json(toChannel(channel, inboundDomain), 200);
  });

  app.openapi(patchRoute, async (c) => {
    const { channelId } = c.req.valid('param');
    const input = c.req.valid('json');
    await findChannel(db, c.get('user'), channelId, 'configure');
    const { before, after } = await db.transaction().execute(async (trx) => {
      // Locked: business hours are merged with what is stored, and two patches must not lose each other's fields.
      const row = await trx
        .selectFrom('channels')
        .selectAll()
        .where('id', '=', channelId)
        .where('deleted_at', 'is', null)
        .forUpdate()
        .executeTakeFirst();
      if (!row) throw new Problem(404, 'not-found', 'Channel not found', `no channel ${channelId}`);
      const columns = settingsColumns(input, row);
      if (Object.keys(columns).length === 0) return { before: row, after: row };
      const updated = await trx
        .updateTable('channels')
        .set(columns)
        .where('id', '=', row.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      return { before: row, after: updated };
    });
    if (assignmentLoosened(input, before, after)) {
      await requestRebalance(
        temporal,
        after,
        {
          reason: `the channel's assignment changed to ${after.assignment_strategy}, capacity ${after.default_agent_capacity ?? 'unlimited'}`,
        },
        taskQueue,
      );
    }
    // The mailbox sync stops when the channel is disabled and must be started again when it is enabled
    // (also on a repeat, after a 503: the signal is idempotent).
    if (input.enabled !== undefined && after.imap_enabled) await tellMailbox(after);
    return c.json(toChannel(after, inboundDomain), 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const { channelId } = c.req.valid('param');
    await findChannel(db, c.get('user'), channelId, 'configure');
    const removed = await db.transaction().execute(async (trx) => {
      const before = await trx
        .selectFrom('channels')
        .select(['imap_enabled'])
        .where('id', '=', channelId)
        .where('deleted_at', 'is', null)
        .forUpdate()
        .executeTakeFirst();
      if (!before) throw new Problem(404, 'not-found', 'Channel not found', `no channel ${channelId}`);
      // IMAP off too: the mailbox activity stops on it even if the signal below does not arrive.
      const row = await trx
        .updateTable('channels')
        .set({ deleted_at: sql<Date>`now()`, imap_enabled: false })
        .where('id', '=', channelId)
        .returningAll()
        .executeTakeFirstOrThrow();
      return { row, hadImap: before.imap_enabled };
    });
    if (removed.hadImap) {
      // Best effort: the row is already gone for the API, and the sync ends at its next wake without the signal.
      await tellMailbox(removed.row).catch((err: unknown) =>
        logger.warn({ err, channelId }, 'could not tell the mailbox workflow that its channel was removed'),
      );
    }
    return c.body(null, 204);
  });

  app.openapi(rotateSecretRoute, async (c) => {
    const { channelId } = c.req.valid('param');
    await findChannel(db, c.get('user'), channelId, 'configure');
    const forwarderSecret = newSecret();
    const updated = await db.transaction().execute((trx) =>
      trx
        .updateTable('channels')
        .set({ forwarder_secret_hash: hashSecret(forwarderSecret) })
        .where('id', '=', channelId)
        .where('deleted_at', 'is', null)
        .returning('id')
        .executeTakeFirst(),
    );
    if (!updated) throw new Problem(404, 'not-found', 'Channel not found', `no channel ${channelId}`);
    return c.json({ forwarderSecret }, 200);
  });

  app.openapi(forwardingAddressRoute, async (c) => {
    const { channelId } = c.req.valid('param');
    const { username, subdomain } = c.req.valid('json');
    const wanted = `${username}@${subdomain}.${inboundDomain}`;
    const answer = () => c.json({ forwardingAddress: wanted, username, subdomain }, 200);
    const refuseChange = (current: string) => {
      throw new Problem(
        409,
        'forwarding-address-immutable',
        'The forwarding address cannot be changed',
        `the channel's forwarding address is ${current}; mail servers forward to it, so it is fixed once set. ` +
          'Create another channel for another address.',
      );
    };

    const channel = await findChannel(db, c.get('user'), channelId, 'configure');
    const current = forwardingAddressOf(channel, inboundDomain);
    if (current === wanted) return answer();
    if (current) return refuseChange(current);

    let claimed;
    try {
      // Only while none is set: of two concurrent first writes, one wins and the other sees it below.
      claimed = await db
        .transaction()
        .execute((trx) =>
          trx
            .updateTable('channels')
            .set({ forwarding_username: username, forwarding_subdomain: subdomain })
            .where('id', '=', channelId)
            .where('deleted_at', 'is', null)
            .where('forwarding_username', 'is', null)
            .returning('id')
            .executeTakeFirst(),
        );
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      throw new Problem(409, 'forwarding-address-taken', 'Forwarding address taken', `${wanted} belongs to another channel`);
    }
    if (claimed) return answer();
    const now = await findChannel(db, c.get('user'), channelId, 'configure');
    const set = forwardingAddressOf(now, inboundDomain);
    if (set === wanted) return answer();
    return refuseChange(set ?? 'already set');
  });

  return app;
}
