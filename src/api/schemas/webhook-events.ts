import { z, type OpenAPIHono } from '@hono/zod-openapi';
import { CONVERSATION_STAGES, CONVERSATION_STATUSES, INBOUND_SOURCES, OUTBOUND_KINDS } from '../../domain/conversation.js';
import type { WebhookEventType } from '../../webhooks/events.js';

// What a subscriber receives, for the OpenAPI document's `webhooks` section: one POST per event, signed the
// Standard Webhooks way, its body `{ type, timestamp, data }` with the data each event type carries.

const ids = {
  conversationId: z.uuid(),
  channelId: z.uuid(),
};

const nullableId = z.uuid().nullable();

const DATA: Record<WebhookEventType, { summary: string; data: z.ZodObject }> = {
  'message.received': {
    summary: 'A customer mail was stored and threaded into its conversation',
    data: z.object({
      ...ids,
      messageId: z.uuid().openapi({ description: 'The inbound message' }),
      classification: z.string().openapi({ description: 'ordinary, auto_reply or bounce' }),
      subject: z.string().nullable(),
      from: z.object({ address: z.string().nullable(), name: z.string().nullable() }),
      receivedVia: z.enum(INBOUND_SOURCES).openapi({ description: 'The way it came in' }),
      imported: z.boolean().openapi({ description: "Existing mail of a mailbox's history (an import): never answered" }),
    }),
  },
  'message.sent': {
    summary: 'An outgoing mail was taken by the SMTP server (or found written in the mailbox)',
    data: z.object({
      ...ids,
      messageId: z.uuid().openapi({ description: 'The outbound message' }),
      kind: z.enum(OUTBOUND_KINDS),
      authorId: nullableId,
      aiAgentId: nullableId,
    }),
  },
  'message.failed': {
    summary: 'An outgoing mail was refused for good or came back as a bounce',
    data: z.object({
      ...ids,
      messageId: z.uuid(),
      kind: z.enum(OUTBOUND_KINDS),
      failure: z.enum(['refused', 'bounced']),
      reason: z.string().nullable().openapi({ description: "The server's reason, at most 300 characters" }),
    }),
  },
  'conversation.created': {
    summary: "A customer's mail started a conversation (message.received follows)",
    data: z.object(ids),
  },
  'conversation.assigned': {
    summary: 'The conversation was assigned to an agent',
    data: z.object({
      ...ids,
      assigneeId: z.uuid(),
      strategy: z.string().nullable().openapi({ description: 'round_robin, load, manual, routing_rule, …' }),
      byId: nullableId.openapi({ description: 'Who assigned it by hand' }),
    }),
  },
  'conversation.stage_changed': {
    summary: 'The conversation moved to another stage',
    data: z.object({ ...ids, stage: z.enum(CONVERSATION_STAGES), status: z.enum(CONVERSATION_STATUSES) }),
  },
  'conversation.resolved': {
    summary: 'An agent or the AI agent resolved the conversation',
    data: z.object({ ...ids, resolvedById: z.uuid(), resolvedByKind: z.enum(['agent', 'ai_agent']) }),
  },
  'conversation.reopened': {
    summary: 'The customer wrote again, or an agent reopened it',
    data: z.object({
      ...ids,
      assigneeId: nullableId,
      reopenedById: nullableId.openapi({ description: 'The agent; null: the customer wrote' }),
    }),
  },
  'conversation.sla_breached': {
    summary: 'The first-response SLA ran out before an agent answered',
    data: z.object({ ...ids, priority: z.string().nullable().openapi({ description: 'The raised priority' }) }),
  },
  'csat.rated': {
    summary: 'The customer rated the conversation',
    data: z.object({ ...ids, surveyId: z.uuid(), rating: z.number().int().min(1).max(5) }),
  },
};

const signatureHeaders = z.object({
  'webhook-id': z.string().openapi({ description: 'The delivery id: the same for every retry and redelivery; dedupe on it' }),
  'webhook-timestamp': z.string().openapi({ description: 'Seconds since the epoch when this attempt was signed' }),
  'webhook-signature': z.string().openapi({
    description: 'v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>" under the secret (whsec_…)>',
  }),
});

function schemaName(type: WebhookEventType): string {
  return (
    type
      .split(/[._]/)
      .map((word) => word[0]!.toUpperCase() + word.slice(1))
      .join('') + 'Event'
  );
}

const EVENT_TYPES = Object.keys(DATA) as WebhookEventType[];

/** The body each event is sent with, as the document declares it (tests check what is sent against it). */
export const WEBHOOK_EVENT_PAYLOADS = Object.fromEntries(
  EVENT_TYPES.map((type) => [
    type,
    z
      .object({
        type: z.literal(type),
        timestamp: z.iso.datetime().openapi({ description: 'When the event happened' }),
        data: DATA[type].data,
      })
      .openapi(schemaName(type)),
  ]),
) as unknown as Record<WebhookEventType, z.ZodObject>;

/** Every event in the document's `webhooks` section, with its payload schema and signature headers. */
export function registerWebhookEvents(registry: OpenAPIHono['openAPIRegistry']): void {
  for (const type of EVENT_TYPES) {
    const { summary } = DATA[type];
    const payload = WEBHOOK_EVENT_PAYLOADS[type];
    registry.registerWebhook({
      method: 'post',
      path: type,
      operationId: `${schemaName(type)[0]!.toLowerCase()}${schemaName(type).slice(1)}Webhook`,
      summary,
      description:
        'Sent to each enabled subscription that asked for this event, in order per conversation; ' +
        'retried with backoff until a 2xx answers or the retry window ends.',
      tags: ['Webhooks'],
      // Mailroom calls the subscriber: no API key; the signature headers authenticate the call.
      security: [],
      request: {
        headers: signatureHeaders,
        body: { required: true, content: { 'application/json': { schema: payload } } },
      },
      responses: {
        200: { description: 'Any 2xx: received (redirects are not followed and count as failures)' },
      },
    });
  }
}
