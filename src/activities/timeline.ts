import { sql, type Kysely, type Updateable } from 'kysely';
import type { ConversationsTable, Database } from '../db/schema.js';
import { statusOfStage, type ConversationStage } from '../domain/conversation.js';
import { enqueueWebhookEvents, webhookDeliveriesOfChanged, webhookEventsOf } from '../webhooks/events.js';
import { activityExecutionKey, claimStatement, keptResultOf, onceWithResult } from './once.js';

export type TimelineEventType =
  | 'customer_message'
  | 'greeting_sent'
  | 'automatic_mail_suppressed'
  | 'assigned'
  | 'queued'
  | 'agent_reply_sent'
  | 'resolved'
  | 'reopened'
  | 'csat_survey_sent'
  | 'csat_rated'
  | 'closed'
  | 'routed'
  | 'unassigned'
  | 'escalated'
  | 'out_of_office_sent'
  | 'ai_reply_sent'
  | 'handover_sent'
  | 'sla_started'
  | 'sla_breached'
  | 'labels_changed'
  /** An agent set the customer's language: { from, to, by }. */
  | 'language_changed'
  /** An agent's internal note: on the timeline only, never mailed. */
  | 'note_added'
  /** Its first mail was spam (a forged sender, a spam verdict): kept out of the queue. */
  | 'marked_spam'
  /** An agent said it is not spam: it is routed like any conversation. */
  | 'released_from_spam'
  /** The SMTP server refused an outgoing mail for good: { outboundMessageId, kind, reason }. */
  | 'delivery_failed'
  /** A delivery report came back for an outgoing mail: { outboundMessageId, kind, reason, inboundMessageId }. */
  | 'delivery_bounced'
  /** A reply written in the channel's mailbox, found in its Sent folder: { outboundMessageId, from, fromName }. */
  | 'answered_from_mailbox'
  /** A sent mail could not be copied to the mailbox's Sent folder: { outboundMessageId, kind, reason }. */
  | 'sent_copy_failed'
  /** An agent's reply waits (undo grace period, send later): { outboundMessageId, authorId, scheduledFor }. */
  | 'agent_reply_scheduled'
  /** A held reply went nowhere: { outboundMessageId, authorId, reason: undone | customer_wrote, byId?, byName? }. */
  | 'agent_reply_cancelled';

/**
 * Appends to a conversation's timeline; call it in the transaction that makes the change. Returns the event's id and
 * time. The webhook deliveries it stands for are written in the same transaction (committed together or not at all);
 * the account's subscriptions are read by the insert's own statement, so an account without webhooks costs nothing more.
 */
export async function recordEvent(
  db: Kysely<Database>,
  conversationId: string,
  type: TimelineEventType,
  data: Record<string, unknown> = {},
): Promise<{ id: string; created_at: Date }> {
  const row = { conversation_id: conversationId, type, data: JSON.stringify(data) };
  const webhookEvents = webhookEventsOf(type, data);
  if (webhookEvents.length === 0) {
    return db.insertInto('conversation_events').values(row).returning(['id', 'created_at']).executeTakeFirstOrThrow();
  }
  const rows = await db
    .with('event', (db) => db.insertInto('conversation_events').values(row).returning(['id', 'created_at']))
    .selectFrom('event')
    .leftJoin('conversations as c', (join) => join.on('c.id', '=', conversationId))
    .leftJoin('webhook_subscriptions as s', (join) => join.onRef('s.account_id', '=', 'c.account_id').on('s.enabled', '=', true))
    .select(['event.id', 'event.created_at', 's.id as subscription_id', 's.events', 'c.account_id', 'c.channel_id'])
    .orderBy('s.id')
    .execute();
  const subscriptions = rows.flatMap(({ subscription_id, events, account_id, channel_id }) =>
    subscription_id && account_id && channel_id ? [{ id: subscription_id, events, account_id, channel_id }] : [],
  );
  if (subscriptions.length > 0) await enqueueWebhookEvents(db, conversationId, webhookEvents, subscriptions);
  return { id: rows[0]!.id, created_at: rows[0]!.created_at };
}

/**
 * The stage the conversation's workflow moved to, with the status it belongs to, and the subscribers' deliveries of its
 * change, in one statement: a repeated call changes nothing and tells nobody. The workflow is the stage's only writer:
 * by recordStage, or by the step that leads to the stage, in that step's transaction.
 */
export async function writeStage(db: Kysely<Database>, conversationId: string, stage: ConversationStage): Promise<void> {
  await sql`
    with changed as (
      update conversations set stage = ${stage}, status = ${statusOfStage(stage)}, updated_at = now()
      where id = ${conversationId} and stage <> ${stage}
      returning id, account_id, channel_id, status
    )
    ${webhookDeliveriesOfChanged('conversation.stage_changed', sql`jsonb_build_object('stage', ${stage}::text, 'status', c.status)`)}
  `.execute(db);
}

/**
 * recordEvent once per activity execution (see `once`), for an activity whose only change is the event: the claim
 * and the event in one statement when the event stands for no webhook (one round trip instead of a transaction's
 * four), else in a transaction.
 */
export async function recordEventOnce(
  db: Kysely<Database>,
  conversationId: string,
  type: TimelineEventType,
  data: Record<string, unknown> = {},
): Promise<void> {
  await changeConversationOnce(db, { conversationId, events: [{ type, data }], result: undefined });
}

/** A change of a conversation's row, the timeline events that tell of it (in order), and what the activity answers. */
export interface ConversationChange<T> {
  conversationId: string;
  /** Columns of the conversation's row to set (updated_at with them); none: the event is the whole change. */
  set?: Updateable<ConversationsTable>;
  events: { type: TimelineEventType; data: Record<string, unknown> }[];
  /** Known before anything is written: the claim keeps it, and a retry of a committed attempt answers with it. */
  result: T;
}

/**
 * A conversation's change once per activity execution (see `once`): when it is told by one event that stands for no
 * webhook, the claim, the row's update and the event are one statement (one round trip instead of a transaction's
 * five), each part made only when this attempt's claim returns the key; else (webhooks to enqueue, several events, or
 * outside an activity) a transaction.
 */
export async function changeConversationOnce<T>(db: Kysely<Database>, change: ConversationChange<T>): Promise<T> {
  const { conversationId, set, events, result } = change;
  const key = activityExecutionKey();
  const row = set && { ...set, updated_at: sql<Date>`now()` };
  const [event, ...more] = events;
  if (!key || !event || more.length > 0 || webhookEventsOf(event.type, event.data).length > 0) {
    return onceWithResult(db, result, async (trx) => {
      if (row) await trx.updateTable('conversations').set(row).where('id', '=', conversationId).execute();
      for (const { type, data } of events) await recordEvent(trx, conversationId, type, data);
    });
  }
  const claimed = db.with('claim', (db) => claimStatement(db, key, result));
  // A data-modifying CTE runs whether or not the statement reads it (nothing after it names this one).
  const changed: typeof claimed = row
    ? (claimed.with('changed', (db) =>
        db
          .updateTable('conversations')
          .set(row)
          .where('id', '=', conversationId)
          .where(sql<boolean>`exists (select 1 from claim)`),
      ) as unknown as typeof claimed)
    : claimed;
  const written = await changed
    .insertInto('conversation_events')
    .columns(['conversation_id', 'type', 'data'])
    .expression((eb) =>
      eb
        .selectFrom('claim')
        .select([
          sql<string>`${conversationId}::uuid`.as('conversation_id'),
          sql<TimelineEventType>`${event.type}`.as('type'),
          sql<string>`${JSON.stringify(event.data)}::jsonb`.as('data'),
        ]),
    )
    .returning('id')
    .executeTakeFirst();
  // Nothing written: an earlier attempt claimed the key and made the change; its answer stands.
  return written ? result : keptResultOf<T>(db, key);
}
