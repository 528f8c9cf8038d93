import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { TimelineEventType } from '../activities/timeline.js';
import type { Database } from '../db/schema.js';

// What backend services can subscribe to, and how each arises from the conversation's timeline: the timeline
// event is written in the transaction that makes the change, and so is each webhook delivery (a transactional
// outbox). Nothing is sent from here: the dispatcher workflow hands the rows to their lanes after the commit.

export const WEBHOOK_EVENT_TYPES = [
  'message.received',
  'message.sent',
  'message.failed',
  'conversation.created',
  'conversation.assigned',
  'conversation.stage_changed',
  'conversation.resolved',
  'conversation.reopened',
  'conversation.sla_breached',
  'csat.rated',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** An event before it is addressed: its type and what its `data` carries besides the conversation's and channel's ids. */
export interface WebhookEvent {
  type: WebhookEventType;
  data: Record<string, unknown>;
}

/** A subject in a payload is cut here: payloads stay small whatever a mail's subject. */
const MAX_SUBJECT_CHARS = 500;

// The outgoing mail each "sent" timeline event stands for.
const SENT_KINDS: Partial<Record<TimelineEventType, string>> = {
  greeting_sent: 'greeting',
  agent_reply_sent: 'reply',
  csat_survey_sent: 'csat_survey',
  out_of_office_sent: 'out_of_office',
  ai_reply_sent: 'ai_reply',
  handover_sent: 'handover',
  answered_from_mailbox: 'mailbox_reply',
};

/** The webhook events a timeline event stands for (none for most): ids and the few facts a backend acts on. */
export function webhookEventsOf(type: TimelineEventType, data: Record<string, unknown>): WebhookEvent[] {
  const sentKind = SENT_KINDS[type];
  if (sentKind) {
    return [
      {
        type: 'message.sent',
        data: {
          messageId: data.outboundMessageId,
          kind: sentKind,
          authorId: data.authorId ?? null,
          aiAgentId: data.aiAgentId ?? null,
        },
      },
    ];
  }
  switch (type) {
    case 'customer_message': {
      const received: WebhookEvent = {
        type: 'message.received',
        data: { messageId: data.inboundMessageId, classification: data.classification ?? 'ordinary' },
      };
      return data.threadedBy === 'new_conversation' ? [{ type: 'conversation.created', data: {} }, received] : [received];
    }
    case 'delivery_failed':
    case 'delivery_bounced':
      return [
        {
          type: 'message.failed',
          data: {
            messageId: data.outboundMessageId,
            kind: data.kind,
            failure: type === 'delivery_bounced' ? 'bounced' : 'refused',
            reason: typeof data.reason === 'string' ? data.reason.slice(0, 300) : null,
          },
        },
      ];
    case 'assigned':
      return [
        {
          type: 'conversation.assigned',
          data: { assigneeId: data.assigneeId, strategy: data.strategy ?? null, byId: data.by ?? null },
        },
      ];
    case 'resolved':
      return [{ type: 'conversation.resolved', data: { resolvedById: data.resolvedBy, resolvedByKind: data.resolvedByKind } }];
    case 'reopened':
      return [
        {
          type: 'conversation.reopened',
          data: { assigneeId: data.assigneeId ?? null, reopenedById: data.reopenedBy ?? null },
        },
      ];
    case 'sla_breached':
      return [{ type: 'conversation.sla_breached', data: { priority: data.priority ?? null } }];
    case 'csat_rated':
      return [{ type: 'csat.rated', data: { surveyId: data.surveyId, rating: data.rating } }];
    default:
      return [];
  }
}

/** An enabled subscription of a conversation's account, as the deliveries of its events are addressed. */
export interface WebhookTarget {
  id: string;
  events: unknown;
  account_id: string;
  channel_id: string;
}

/**
 * Writes one delivery per event and enabled subscription of the conversation's account that asked for it; call
 * it in the transaction that makes the change, so the event is delivered exactly when the change is committed.
 * `subscriptions`: the account's enabled ones when the caller read them already (recordEvent does, with its insert).
 */
export async function enqueueWebhookEvents(
  db: Kysely<Database>,
  conversationId: string,
  events: WebhookEvent[],
  subscriptions?: readonly WebhookTarget[],
): Promise<void> {
  if (events.length === 0) return;
  subscriptions ??= await db
    .selectFrom('conversations as c')
    .innerJoin('webhook_subscriptions as s', 's.account_id', 'c.account_id')
    .select(['s.id', 's.events', 'c.account_id', 'c.channel_id'])
    .where('c.id', '=', conversationId)
    .where('s.enabled', '=', true)
    .orderBy('s.id')
    .execute();
  const interested = (type: WebhookEventType) => subscriptions.filter((s) => (s.events as string[]).includes(type));
  if (!events.some((event) => interested(event.type).length > 0)) return;
  const details = await messageDetails(db, events);
  const timestamp = new Date().toISOString();
  const rows = events.flatMap((event) =>
    interested(event.type).map((subscription) => ({
      id: randomUUID(),
      subscription_id: subscription.id,
      account_id: subscription.account_id,
      conversation_id: conversationId,
      event_type: event.type,
      payload: JSON.stringify({
        type: event.type,
        timestamp,
        data: { conversationId, channelId: subscription.channel_id, ...event.data, ...details(event) },
      }),
    })),
  );
  // One insert in event order: the sequence numbers keep the order each lane delivers in.
  await db.insertInto('webhook_deliveries').values(rows).execute();
}

/**
 * enqueueWebhookEvents for one event, as the tail of a statement that makes the change: `with changed as (update
 * conversations … returning id, account_id, channel_id, …)` followed by this inserts the deliveries in the same
 * statement, one round trip and one commit. `data` is the event's own data as jsonb; it may read the changed row as `c`.
 * The payload is the one enqueueWebhookEvents writes.
 */
export function webhookDeliveriesOfChanged(type: WebhookEventType, data: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`
    insert into webhook_deliveries (id, subscription_id, account_id, conversation_id, event_type, payload)
    select gen_random_uuid(), s.id, c.account_id, c.id, ${type}, jsonb_build_object(
      'type', ${type}::text,
      'timestamp', to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
      'data', jsonb_build_object('conversationId', c.id, 'channelId', c.channel_id) || ${data}
    )
    from changed c
    join webhook_subscriptions s on s.account_id = c.account_id and s.enabled and s.events @> ${JSON.stringify([type])}::jsonb
    order by s.id`;
}

/** A received message's subject and sender, which a backend shows without a second request. */
async function messageDetails(db: Kysely<Database>, events: WebhookEvent[]) {
  const ids = events.filter((event) => event.type === 'message.received').map((event) => String(event.data.messageId));
  const rows =
    ids.length === 0
      ? []
      : await db
          .selectFrom('inbound_messages as m')
          .leftJoin('conversations as c', 'c.id', 'm.conversation_id')
          .leftJoin('contacts as ct', 'ct.id', 'c.contact_id')
          .select(['m.id', 'm.subject', 'm.from_address', 'm.from_name', 'm.received_via', 'm.imported', 'ct.email'])
          .where('m.id', 'in', ids)
          .execute();
  const byId = new Map(rows.map((row) => [row.id, row]));
  return (event: WebhookEvent) => {
    const row = event.type === 'message.received' ? byId.get(String(event.data.messageId)) : undefined;
    if (!row) return {};
    return {
      subject: row.subject === null ? null : row.subject.slice(0, MAX_SUBJECT_CHARS),
      from: { address: row.from_address ?? row.email ?? null, name: row.from_name ?? null },
      // A mailbox's history (an import, importDays) arrives as received mail too: a backend may want to tell it apart.
      receivedVia: row.received_via,
      imported: row.imported,
    };
  };
}
