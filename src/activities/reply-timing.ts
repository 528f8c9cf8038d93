import { sql, type Transaction } from 'kysely';
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
