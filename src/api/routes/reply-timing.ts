import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import type { Db } from '../../db/connection.js';
import { messagesSince, type NewMessage } from '../../activities/reply-timing.js';
import { nextOpening } from '../../domain/business-hours.js';
import { ConversationStateError, createConversationGateway } from '../../temporal/gateway.js';
import { TASK_QUEUE } from '../../workflows/ids.js';
import { SCHEDULED_REPLIES_MAX, SEND_LATER_MAX_DAYS } from '../../workflows/conversation.js';
import { findConversation } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// When an agent's reply goes out and whether it should: undo send (the channel's grace period), send later
// (a moment, or when business hours open), the collision guard (what was written since the agent looked)
// and the draft lease that shows who is writing a reply right now.

/** A draft lease runs out this long after its last renewal (PUT …/drafting). */
export const DRAFT_LEASE_MS = 60_000;

export const ReplyTimingFields = {
  sendAt: z
    .union([
      z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time with offset, or business_hours' }),
      z.literal('business_hours'),
    ])
    .optional()
    .openapi({
      description:
        `Send later: at this moment (at most ${SEND_LATER_MAX_DAYS} days ahead), or "business_hours" for when the channel's business hours ` +
        'open next (at once, with the undo grace period, while they are open). Cancelled when the customer writes first.',
      example: '2026-12-07T09:00:00+01:00',
    }),
  lastSeenMessageId: z
    .uuid()
    .optional()
    .openapi({
      description:
        'Collision guard: the id of the last message the agent saw (GET the conversation: messages[].id). When the customer ' +
        'or another agent wrote since, the reply answers 409 reply-collision with newMessages, unless force is true.',
    }),
  force: z.boolean().optional().openapi({ description: 'Send although something was written since lastSeenMessageId' }),
};

/** What the reply waits for: the channel's undo grace period, or the moment it was scheduled for (epoch ms). */
export async function replyTiming(
  db: Db,
  conversation: { id: string; channel_id: string },
  sendAt: string | undefined,
  now: number,
): Promise<{ undoSeconds?: number; sendAt?: number }> {
  const channel = await db
    .selectFrom('channels')
    .select(['undo_send_seconds', 'business_hours_enabled', 'business_hours'])
    .where('id', '=', conversation.channel_id)
    .executeTakeFirstOrThrow();
  const undo = channel.undo_send_seconds > 0 ? { undoSeconds: channel.undo_send_seconds } : {};
  if (sendAt === undefined) return undo;
  let at: number;
  if (sendAt === 'business_hours') {
    if (!channel.business_hours_enabled || !channel.business_hours) {
      throw invalidSendAt('the channel has no business hours: give a moment instead of business_hours');
    }
    const opens = nextOpening(channel.business_hours, new Date(now));
    if (!opens) throw invalidSendAt('the channel’s business hours never open');
    if (opens.getTime() <= now) return undo; // open now
    at = opens.getTime();
  } else {
    at = Date.parse(sendAt);
    if (at <= now) throw invalidSendAt('sendAt is in the past');
  }
  if (at > now + SEND_LATER_MAX_DAYS * 86_400_000) {
    throw invalidSendAt(`a reply can be scheduled at most ${SEND_LATER_MAX_DAYS} days ahead`);
  }
  const { waiting } = await db
    .selectFrom('outbound_messages')
    .select(sql<number>`count(*)::int`.as('waiting'))
    .where('conversation_id', '=', conversation.id)
    .where('delivery_status', '=', 'scheduled')
    .executeTakeFirstOrThrow();
  if (waiting >= SCHEDULED_REPLIES_MAX) {
    throw new Problem(
      409,
      'too-many-scheduled-replies',
      'Too many replies wait in this conversation',
      `at most ${SCHEDULED_REPLIES_MAX} replies may wait in a conversation; cancel one first`,
    );
  }
  return { sendAt: at };
}

function invalidSendAt(message: string): Problem {
  return new Problem(422, 'validation', 'Request validation failed', message, [{ field: 'sendAt', message }]);
}

/** The collision guard before the reply is sent to the workflow (which checks again as it writes it); 422 for a foreign message. */
export async function newSince(db: Db, conversationId: string, lastSeenMessageId: string, userId: string): Promise<NewMessage[]> {
  const written = await messagesSince(db, { conversationId, lastSeenMessageId, authorId: userId });
  if (!written) {
    const message = 'is not a message of this conversation';
    throw new Problem(422, 'validation', 'Request validation failed', `lastSeenMessageId ${message}`, [
      { field: 'lastSeenMessageId', message },
    ]);
  }
  return written;
}

export function collision(newMessages: NewMessage[]): Problem {
  const detail = `${newMessages.length} message(s) were written since the one you saw; read them, or send with force: true`;
  return new Problem(409, 'reply-collision', 'Someone wrote since you looked', detail, undefined, {}, { newMessages });
}

export const DraftingSchema = z
  .object({
    agent: z.object({ id: z.uuid(), name: z.string() }),
    since: z.iso.datetime(),
    expiresAt: z.iso.datetime(),
  })
  .openapi('Drafting');

/** Who is writing a reply in the conversation right now (their lease has not run out). */
export async function activeDrafts(db: Db, conversationId: string, now: number): Promise<z.infer<typeof DraftingSchema>[]> {
  const rows = await db
    .selectFrom('draft_leases as d')
    .innerJoin('users as u', 'u.id', 'd.user_id')
    .select(['u.id', 'u.name', 'd.since', 'd.expires_at'])
    .where('d.conversation_id', '=', conversationId)
    .where('d.expires_at', '>', new Date(now))
    .orderBy('d.since')
    .execute();
  return rows.map((row) => ({
    agent: { id: row.id, name: row.name },
    since: row.since.toISOString(),
    expiresAt: row.expires_at.toISOString(),
  }));
}

const params = z.object({ conversationId: z.uuid() });
const security = [{ apiKey: [] }];

const ScheduledReplySchema = z
  .object({
    id: z.uuid(),
    authorId: z.uuid().nullable(),
    subject: z.string(),
    text: z.string(),
    scheduledFor: z.iso.datetime(),
  })
  .openapi('ScheduledReply');

const listScheduledRoute = createRoute({
  method: 'get',
  path: '/v1/conversations/{conversationId}/replies/scheduled',
  operationId: 'listScheduledReplies',
  tags: ['Conversations'],
  summary: 'Replies that wait: in their undo grace period, or scheduled for later',
  description: 'Oldest moment first. Each can be cancelled with DELETE /v1/conversations/{conversationId}/replies/{replyId}.',
  security,
  request: { params },
  responses: {
    200: {
      description: 'The waiting replies',
      content: { 'application/json': { schema: z.object({ replies: z.array(ScheduledReplySchema) }) } },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

const cancelRoute = createRoute({
  method: 'delete',
  path: '/v1/conversations/{conversationId}/replies/{replyId}',
  operationId: 'undoReply',
  tags: ['Conversations'],
  summary: 'Undo a reply that still waits (undo grace period, send later)',
  description:
    'The reply is not sent; its status becomes cancelled and the timeline records agent_reply_cancelled with who undid it. ' +
    '409 reply-already-sent once it went out (or was cancelled before).',
  security,
  request: { params: params.extend({ replyId: z.uuid() }) },
  responses: {
    200: {
      description: 'Cancelled: nothing is sent',
      content: {
        'application/json': {
          schema: z.object({ id: z.uuid(), status: z.literal('cancelled') }).openapi('CancelledReply'),
        },
      },
    },
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

const renewDraftingRoute = createRoute({
  method: 'put',
  path: '/v1/conversations/{conversationId}/drafting',
  operationId: 'startDrafting',
  tags: ['Conversations'],
  summary: 'Say that the calling agent is writing a reply (renew every ~30 s)',
  description: `Others see it in the conversation's drafting list until it runs out, ${DRAFT_LEASE_MS / 1000} s after the last renewal.`,
  security,
  request: { params },
  responses: {
    200: { description: 'The lease', content: { 'application/json': { schema: DraftingSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

const releaseDraftingRoute = createRoute({
  method: 'delete',
  path: '/v1/conversations/{conversationId}/drafting',
  operationId: 'stopDrafting',
  tags: ['Conversations'],
  summary: 'Say that the calling agent stopped writing a reply',
  security,
  request: { params },
  responses: { 204: { description: 'Released' }, ...problemResponses(401, 403, 404, 422) },
});

export function replyTimingRoutes({ db, temporal, taskQueue = TASK_QUEUE, clock = Date.now }: ApiDeps) {
  const conversations = createConversationGateway(temporal, { taskQueue });
  const app = new OpenAPIHono<AppEnv>();

  const alreadySent = (replyId: string) =>
    new Problem(
      409,
      'reply-already-sent',
      'The reply was already sent',
      `the reply ${replyId} no longer waits: it cannot be undone`,
    );

  app.openapi(listScheduledRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    await findConversation(db, c.get('user'), conversationId);
    const rows = await db
      .selectFrom('outbound_messages')
      .select(['id', 'author_id', 'subject', 'text_body', 'scheduled_for'])
      .where('conversation_id', '=', conversationId)
      .where('delivery_status', '=', 'scheduled')
      .orderBy('scheduled_for')
      .execute();
    const replies = rows.map((row) => ({
      id: row.id,
      authorId: row.author_id,
      subject: row.subject,
      text: row.text_body,
      scheduledFor: row.scheduled_for!.toISOString(),
    }));
    return c.json({ replies }, 200);
  });

  app.openapi(cancelRoute, async (c) => {
    const { conversationId, replyId } = c.req.valid('param');
    const user = c.get('user');
    await findConversation(db, user, conversationId);
    const reply = await db
      .selectFrom('outbound_messages')
      .select('delivery_status')
      .where('id', '=', replyId)
      .where('conversation_id', '=', conversationId)
      .where('kind', '=', 'reply')
      .executeTakeFirst();
    if (!reply) throw new Problem(404, 'not-found', 'Reply not found', `no reply ${replyId} in this conversation`);
    if (reply.delivery_status !== 'scheduled') throw alreadySent(replyId);
    try {
      await conversations.cancelReply(conversationId, replyId, { id: user.id, name: user.name });
    } catch (error) {
      // The timer fired meanwhile: it went out.
      if (error instanceof ConversationStateError && (error.type === 'ReplyNotHeld' || error.type === 'Ended')) {
        throw alreadySent(replyId);
      }
      throw error;
    }
    return c.json({ id: replyId, status: 'cancelled' as const }, 200);
  });

  app.openapi(renewDraftingRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const user = c.get('user');
    await findConversation(db, user, conversationId);
    const now = new Date(clock());
    const expiresAt = new Date(now.getTime() + DRAFT_LEASE_MS);
    // A lease that ran out starts again: "since" is when this stretch of writing began.
    const lease = await db
      .insertInto('draft_leases')
      .values({ conversation_id: conversationId, user_id: user.id, since: now, expires_at: expiresAt })
      .onConflict((oc) =>
        oc.columns(['conversation_id', 'user_id']).doUpdateSet({
          since: sql<Date>`case when draft_leases.expires_at > ${now} then draft_leases.since else ${now} end`,
          expires_at: expiresAt,
        }),
      )
      .returning(['since', 'expires_at'])
      .executeTakeFirstOrThrow();
    return c.json(
      {
        agent: { id: user.id, name: user.name },
        since: lease.since.toISOString(),
        expiresAt: lease.expires_at.toISOString(),
      },
      200,
    );
  });

  app.openapi(releaseDraftingRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const user = c.get('user');
    await findConversation(db, user, conversationId);
    await releaseDraft(db, conversationId, user.id);
    return c.body(null, 204);
  });

  return app;
}

/** The agent sent (or gave up on) their reply: they are no longer writing one. */
export async function releaseDraft(db: Db, conversationId: string, userId: string): Promise<void> {
  await db.deleteFrom('draft_leases').where('conversation_id', '=', conversationId).where('user_id', '=', userId).execute();
}
