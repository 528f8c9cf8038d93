import { ApplicationFailure } from '@temporalio/activity';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Actor } from '../domain/conversation.js';
import type { ActivityDeps } from './deps.js';
import { recordEvent } from './timeline.js';

// An agent's reply held back in the outbox (undo grace period, send later): the conversation's workflow
// holds the timer; these move the row on when it fires or when the reply is cancelled.

/** In the transaction that writes the reply: it waits (scheduled) instead of going out; the timeline says until when. */
export async function holdReply(
  trx: Transaction<Database>,
  input: { conversationId: string; outboxId: string; authorId: string; scheduledFor: string },
): Promise<void> {
  const held = await trx
    .updateTable('outbound_messages')
    .set({ delivery_status: 'scheduled', scheduled_for: input.scheduledFor })
    .where('id', '=', input.outboxId)
    .where('delivery_status', '=', 'queued')
    .where('sent_at', 'is', null)
    .where('scheduled_for', 'is', null)
    .returning('id')
    .executeTakeFirst();
  if (!held) return; // a retry: held (or released) before
  await recordEvent(trx, input.conversationId, 'agent_reply_scheduled', {
    outboundMessageId: input.outboxId,
    authorId: input.authorId,
    scheduledFor: input.scheduledFor,
  });
}

/** The first response the SLA measures: an agent's reply that goes out (now, or when its wait is over). */
export async function markFirstResponse(trx: Transaction<Database>, conversationId: string): Promise<void> {
  await trx
    .updateTable('conversations')
    .set({ first_response_at: sql<Date>`coalesce(first_response_at, now())` })
    .where('id', '=', conversationId)
    .execute();
}

/** A message written after the one an agent saw last: what the collision guard shows them. */
export interface NewMessage {
  id: string;
  direction: 'inbound' | 'outbound';
  from: string | null;
  authorId: string | null;
  at: string;
  text: string | null;
}

const NEW_MESSAGES_SHOWN = 20;
/** Enough of each new message to tell what it says; a 409 never carries whole mails. */
const NEW_MESSAGE_TEXT_CHARS = 500;
const excerpt = (text: string | null) => (text === null ? null : text.slice(0, NEW_MESSAGE_TEXT_CHARS));

/**
 * What the customer (any inbound mail) or another agent or the AI agent (a reply not cancelled) wrote after
 * the message the agent saw last; null when that message is not in this conversation.
 */
export async function messagesSince(
  db: Kysely<Database>,
  input: { conversationId: string; lastSeenMessageId: string; authorId: string },
): Promise<NewMessage[] | null> {
  const { conversationId, lastSeenMessageId, authorId } = input;
  const seen =
    (await db
      .selectFrom('inbound_messages')
      .select('received_at as at')
      .where('id', '=', lastSeenMessageId)
      .where('conversation_id', '=', conversationId)
      .executeTakeFirst()) ??
    (await db
      .selectFrom('outbound_messages')
      .select('created_at as at')
      .where('id', '=', lastSeenMessageId)
      .where('conversation_id', '=', conversationId)
      .executeTakeFirst());
  if (!seen) return null;
  const inbound = await db
    .selectFrom('inbound_messages')
    .select(['id', 'from_address', 'reply_text', 'text_body', 'received_at'])
    .where('conversation_id', '=', conversationId)
    .where('received_at', '>', seen.at)
    .where('id', '!=', lastSeenMessageId)
    .orderBy('received_at')
    .limit(NEW_MESSAGES_SHOWN)
    .execute();
  const outbound = await db
    .selectFrom('outbound_messages')
    .select(['id', 'from_address', 'author_id', 'text_body', 'created_at'])
    .where('conversation_id', '=', conversationId)
    .where('kind', 'in', ['reply', 'ai_reply'])
    .where('delivery_status', '!=', 'cancelled')
    .where('created_at', '>', seen.at)
    .where('id', '!=', lastSeenMessageId)
    .where((eb) => eb.or([eb('author_id', 'is', null), eb('author_id', '!=', authorId)]))
    .orderBy('created_at')
    .limit(NEW_MESSAGES_SHOWN)
    .execute();
  return [
    ...inbound.map((m) => ({
      id: m.id,
      direction: 'inbound' as const,
      from: m.from_address,
      authorId: null,
      at: m.received_at.toISOString(),
      text: excerpt(m.reply_text ?? m.text_body),
    })),
    ...outbound.map((m) => ({
      id: m.id,
      direction: 'outbound' as const,
      from: m.from_address,
      authorId: m.author_id,
      at: m.created_at.toISOString(),
      text: excerpt(m.text_body),
    })),
  ]
    .sort((a, b) => a.at.localeCompare(b.at))
    .slice(0, NEW_MESSAGES_SHOWN);
}

/**
 * The collision guard where the reply is written: under the conversation's row lock, so that of two agents
 * answering the same mail at once the second finds the first's reply and is refused (ReplyCollision).
 */
export async function refuseCollision(
  trx: Transaction<Database>,
  input: { conversationId: string; lastSeenMessageId: string; authorId: string },
): Promise<void> {
  await trx.selectFrom('conversations').select('id').where('id', '=', input.conversationId).forUpdate().execute();
  const written = await messagesSince(trx, input);
  if (written === null || written.length > 0) {
    const what =
      written === null ? 'the message seen last is not in this conversation' : `${written.length} message(s) were written since`;
    throw ApplicationFailure.nonRetryable(what, 'ReplyCollision');
  }
}

export type ReplyCancelReason = 'undone' | 'customer_wrote';

export function createReplyTimingActivities({ db }: Pick<ActivityDeps, 'db'>) {
  return {
    /** The timer fired: the held reply may go out (scheduled → queued). False when it is no longer held. */
    async releaseScheduledReply({ outboxId }: { outboxId: string }): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        const released = await trx
          .updateTable('outbound_messages')
          .set({ delivery_status: 'queued' })
          .where('id', '=', outboxId)
          .where('delivery_status', '=', 'scheduled')
          .returning('conversation_id')
          .executeTakeFirst();
        if (released) await markFirstResponse(trx, released.conversation_id);
        return released !== undefined;
      });
    },

    /** The held reply goes nowhere; the timeline says who undid it or that the customer wrote first. */
    async cancelScheduledReply(input: {
      conversationId: string;
      outboxId: string;
      reason: ReplyCancelReason;
      /** The agent who undid it. */
      by?: Actor;
    }): Promise<void> {
      await db.transaction().execute(async (trx) => {
        const cancelled = await trx
          .updateTable('outbound_messages')
          .set({
            delivery_status: 'cancelled',
            cancelled_at: sql<Date>`now()`,
            cancelled_by: input.by?.id ?? null,
            cancel_reason: input.reason,
          })
          .where('id', '=', input.outboxId)
          .where('delivery_status', '=', 'scheduled')
          .returning(['author_id', 'scheduled_for'])
          .executeTakeFirst();
        if (!cancelled) return; // cancelled before (a retried activity)
        await recordEvent(trx, input.conversationId, 'agent_reply_cancelled', {
          outboundMessageId: input.outboxId,
          authorId: cancelled.author_id,
          reason: input.reason,
          ...(input.by ? { byId: input.by.id, byName: input.by.name } : {}),
          scheduledFor: cancelled.scheduled_for?.toISOString() ?? null,
        });
      });
    },
  };
}
