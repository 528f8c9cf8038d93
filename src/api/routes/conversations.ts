import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import type { Db } from '../../db/connection.js';
import {
  CONVERSATION_STAGES,
  CONVERSATION_STATUSES,
  DELIVERY_STATUSES,
  INBOUND_SOURCES,
  MAIL_CLASSIFICATIONS,
  OUTBOUND_KINDS,
  SENT_COPY_STATUSES,
} from '../../domain/conversation.js';
import { PRIORITIES } from '../../domain/routing-rules.js';
import { recordEvent } from '../../activities/timeline.js';
import { TASK_QUEUE } from '../../workflows/ids.js';
import { ConversationStateError, createConversationGateway, type ConversationStart } from '../../temporal/gateway.js';
import { accessibleChannelIds, requireMembership } from '../access.js';
import type { ApiDeps, AppEnv, AuthenticatedUser } from '../env.js';
import { IdempotencyHeadersSchema } from '../idempotency.js';
import { afterCursor, decodeCursor, PageQuerySchema, pageSchema, toPage } from '../pagination.js';
import { Problem, problemResponses } from '../problem.js';
import { ReplyInputSchema } from './reply-preview.js';
import { activeDrafts, collision, DraftingSchema, newSince, releaseDraft, replyTiming } from './reply-timing.js';
import { replyFileContent, resolveReply, sentReplyFiles } from '../reply-content.js';

// Conversations as backend services and agents' tools see them: lists with filters, the whole record
// (messages, attachments, timeline, internal notes), what agents do (reply, resolve, reopen, assign,
// label, note). Conversations opened from a web form (A11) are in web-form.ts.

const StageSchema = z.enum(CONVERSATION_STAGES);
const StatusSchema = z.enum(CONVERSATION_STATUSES);

export const ConversationSchema = z
  .object({
    id: z.uuid(),
    channelId: z.uuid(),
    contact: z.object({ id: z.uuid(), email: z.string().nullable(), name: z.string().nullable() }),
    subject: z.string(),
    status: StatusSchema,
    stage: StageSchema,
    assigneeId: z.uuid().nullable(),
    aiAgentId: z.uuid().nullable(),
    teamId: z.uuid().nullable(),
    priority: z.enum(PRIORITIES),
    labels: z.array(z.string()),
    language: z.string().openapi({
      description:
        "The customer's language (ISO 639-1): detected from their first mail among the channel's languages, else the channel's first; set with PUT …/language",
      example: 'de',
    }),
    sla: z.object({
      dueAt: z.iso.datetime().nullable().openapi({ description: 'First response due by (counted in business time)' }),
      breachedAt: z.iso.datetime().nullable(),
      firstResponseAt: z.iso.datetime().nullable(),
    }),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
    resolvedAt: z.iso.datetime().nullable(),
  })
  .openapi('Conversation');

const AttachmentSchema = z
  .object({
    id: z.uuid(),
    filename: z.string(),
    contentType: z.string(),
    sizeBytes: z.number().int(),
    inline: z.boolean().openapi({ description: 'Shown in the HTML body (a `cid:` image) rather than offered as a file' }),
    contentId: z.string().nullable().openapi({ description: 'Without angle brackets, as `cid:` links in the HTML name it' }),
    omittedReason: z
      .string()
      .nullable()
      .openapi({ description: 'Why the bytes were not stored (over the channel limit); null when they can be downloaded' }),
  })
  .openapi('Attachment');

const MessageSchema = z
  .object({
    id: z.uuid(),
    direction: z.enum(['inbound', 'outbound']),
    kind: z.enum(['customer', ...OUTBOUND_KINDS]),
    messageId: z.string(),
    receivedVia: z.enum(INBOUND_SOURCES).nullable().openapi({ description: 'How an inbound message came in' }),
    from: z.string().nullable().openapi({ description: 'Null for a web-form submission without an address' }),
    to: z.string().nullable(),
    cc: z.array(z.string()).openapi({ description: 'Cc recipients (lower-cased)' }),
    bcc: z.array(z.string()).openapi({ description: 'Outgoing messages: Bcc recipients (in the envelope only); inbound: []' }),
    subject: z.string().nullable(),
    text: z.string().nullable(),
    replyText: z.string().nullable().openapi({ description: 'The new part of the text, without the quoted history' }),
    html: z.string().nullable().openapi({ description: 'Inbound HTML, sanitized when the mail arrived: safe to show' }),
    attachments: z.array(AttachmentSchema),
    classification: z.enum(MAIL_CLASSIFICATIONS).nullable(),
    sender: z
      .object({
        verdict: z.enum(['ordinary', 'unverified', 'spam']).openapi({
          description:
            'What the receiving server the channel trusts said: spam (a forged sender or a spam verdict), unverified (DMARC failed but was not enforced), ordinary',
        }),
        reasons: z.array(z.string()).openapi({
          description: 'One line per finding, e.g. "DMARC fail for bank.example (header.from) according to mx.google.com"',
        }),
      })
      .nullable()
      .openapi({ description: 'Inbound messages only; spam and unverified senders are never answered automatically' }),
    authorId: z.uuid().nullable(),
    aiAgentId: z.uuid().nullable(),
    at: z.iso.datetime(),
    sentAt: z.iso.datetime().nullable(),
    deliveryStatus: z
      .enum(DELIVERY_STATUSES)
      .nullable()
      .openapi({
        description:
          'Outgoing messages: queued (not sent yet, or retried after a temporary failure), sent (the SMTP server took it), ' +
          'failed (the SMTP server refused it for good), bounced (a delivery report came back for it), ' +
          "scheduled (an agent's reply waiting: undo grace period or send later), cancelled (it waited and was not sent); null for inbound messages",
      }),
    deliveryError: z
      .string()
      .nullable()
      .openapi({
        description:
          'Failed or bounced: what the SMTP server or the delivery report said; queued: why the last attempt did not go out; ' +
          'sent: the recipients the SMTP server refused while it took the mail for the others (a Cc, a Bcc); else null',
      }),
    scheduledFor: z.iso.datetime().nullable().openapi({
      description: "An agent's reply that waited (undo grace period, send later): when it goes or went out; else null",
    }),
    cancelled: z
      .object({
        at: z.iso.datetime(),
        byId: z.uuid().nullable().openapi({ description: 'The agent who undid it; null when the customer wrote first' }),
        reason: z.enum(['undone', 'customer_wrote']),
      })
      .nullable()
      .openapi({ description: 'A waiting reply that was not sent (deliveryStatus cancelled), and why' }),
    sentCopy: z
      .object({
        status: z.enum(SENT_COPY_STATUSES).openapi({
          description:
            'pending (the mailbox sync appends it), appended, failed (see error), found (a reply written in the mailbox: it was in the Sent folder to begin with)',
        }),
        folder: z.string().nullable(),
        at: z.iso.datetime().nullable().openapi({ description: 'When it was appended (found: when it arrived in the folder)' }),
        error: z.string().nullable(),
      })
      .nullable()
      .openapi({
        description:
          "Its copy in the IMAP mailbox's Sent folder; null when none is made (inbound mail, no mailbox, a kind the channel does not copy)",
      }),
  })
  .openapi('Message');

const EventSchema = z
  .object({ id: z.string(), type: z.string(), data: z.record(z.string(), z.unknown()), at: z.iso.datetime() })
  .openapi('TimelineEvent');

const NoteSchema = z
  .object({
    id: z.string().openapi({ description: 'The id of its timeline event (note_added)' }),
    authorId: z.uuid(),
    authorName: z.string(),
    text: z.string(),
    createdAt: z.iso.datetime(),
  })
  .openapi('Note');

const ConversationDetailSchema = ConversationSchema.extend({
  messages: z.array(MessageSchema),
  timeline: z.array(EventSchema),
  notes: z.array(NoteSchema).openapi({ description: 'Internal notes of agents, oldest first; never mailed' }),
  drafting: z
    .array(DraftingSchema)
    .openapi({ description: 'Agents writing a reply right now (PUT …/drafting); a lease runs out unless renewed' }),
}).openapi('ConversationDetail');

// Lower-cased like the labels routing rules set; no commas, which separate labels in the list filter.
const LabelSchema = z
  .string()
  .trim()
  .toLowerCase()
  .min(1, 'a label must not be empty')
  .max(50, 'a label must be at most 50 characters')
  .refine((label) => !label.includes(','), 'a label must not contain a comma');
const MAX_LABELS = 50;
const MAX_LABEL_FILTERS = 20;

// The label filter in the document, within what LabelSchema accepts so that no request the document allows is
// refused: a label is not blank (JavaScript's trim and \s agree; U+FEFF is listed for other regex dialects), has
// no comma nor U+0000, and at most 50 characters from its first to its last non-blank one. The inner characters
// are a range up to U+FFFF: in JavaScript it counts UTF-16 units like the length check, elsewhere it keeps
// generators to characters that are one unit. Without U+0130, the one character that lower-cases to two.
const labelPattern = String.raw` *[^\s,\ufeff\u0000\u0130](?:[\u0001-\u002b\u002d-\u012f\u0131-\uffff]{0,48}[^\s,\ufeff\u0000\u0130])? *`;
const labelFilterDoc = {
  single: `^${labelPattern}$`,
  list: `^${labelPattern}(?:,${labelPattern}){0,${MAX_LABEL_FILTERS - 1}}$`,
};
const LabelsSchema = z.object({ labels: z.array(z.string()) }).openapi('Labels');

const idParams = z.object({ conversationId: z.uuid() });
const security = [{ apiKey: [] }];
const instant = z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time, e.g. 2026-11-16T09:00:00Z' });

const listRoute = createRoute({
  method: 'get',
  path: '/v1/conversations',
  operationId: 'listConversations',
  tags: ['Conversations'],
  summary: 'List conversations, newest first',
  description: "Only conversations of channels the caller works: an admin's account, an agent's own channels.",
  security,
  request: {
    query: PageQuerySchema.extend({
      status: StatusSchema.optional(),
      stage: StageSchema.optional(),
      channelId: z.uuid().optional(),
      assigneeId: z
        .union([z.uuid(), z.literal('none')], { error: "must be a user id or 'none'" })
        .optional()
        .openapi({ description: "A user id, or 'none' for unassigned conversations" }),
      contactId: z.uuid().optional(),
      label: z
        .union([
          z.string().openapi({ minLength: 1, pattern: labelFilterDoc.list }),
          z
            .array(z.string().openapi({ minLength: 1, maxLength: 50, pattern: labelFilterDoc.single }))
            .openapi({ maxItems: MAX_LABEL_FILTERS }),
        ])
        .transform((value) => [value].flat().flatMap((part) => part.split(',')))
        .pipe(z.array(LabelSchema).max(MAX_LABEL_FILTERS, `at most ${MAX_LABEL_FILTERS} labels`))
        .optional()
        .openapi({
          description:
            'Conversations carrying all these labels (at most 20): repeat the parameter or separate by commas. ' +
            'A label is not empty, at most 50 characters, case does not matter.',
        }),
      createdAfter: instant.optional(),
      createdBefore: instant.optional(),
      updatedAfter: instant.optional(),
    }),
  },
  responses: {
    200: {
      description: 'Conversations',
      content: { 'application/json': { schema: pageSchema(ConversationSchema, 'ConversationPage') } },
    },
    ...problemResponses(401, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/conversations/{conversationId}',
  operationId: 'getConversation',
  tags: ['Conversations'],
  summary: 'One conversation with its messages, attachments, timeline and internal notes',
  security,
  request: { params: idParams },
  responses: {
    200: { description: 'The conversation', content: { 'application/json': { schema: ConversationDetailSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

const attachmentRoute = createRoute({
  method: 'get',
  path: '/v1/conversations/{conversationId}/attachments/{attachmentId}',
  operationId: 'downloadAttachment',
  tags: ['Conversations'],
  summary: 'Download an attachment of a customer mail or of a reply (sent, or uploaded for one)',
  description: 'Always as a download (Content-Disposition: attachment). 404 when its bytes were not stored (see omittedReason).',
  security,
  request: { params: z.object({ conversationId: z.uuid(), attachmentId: z.uuid() }) },
  responses: {
    200: {
      description: 'The bytes, with the content type the mail gave',
      content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

export const SentReplySchema = z
  .object({
    outboundMessageId: z.uuid(),
    messageId: z.string(),
    scheduledFor: z.iso.datetime().optional().openapi({
      description:
        "Set when the reply waits (the channel's undo grace period, or sendAt): it goes out then unless undone with DELETE …/replies/{replyId}",
    }),
  })
  .openapi('SentReply');

const replyRoute = createRoute({
  method: 'post',
  path: '/v1/conversations/{conversationId}/replies',
  operationId: 'replyToConversation',
  tags: ['Conversations'],
  summary: 'Reply to the customer as the calling agent',
  description:
    'The reply is mailed threaded into the conversation (In-Reply-To, References) with a stable Message-ID. ' +
    'It is answered once the reply is in the outbox; the mail goes out as soon as the mail server takes it ' +
    '(the timeline records agent_reply_sent then). ' +
    "409 no-address while the contact's email address is unknown (a web form without one). " +
    "With the channel's undo grace period (undoSendSeconds) or sendAt the reply waits (scheduledFor in the answer) and " +
    'DELETE /v1/conversations/{conversationId}/replies/{replyId} cancels it meanwhile. 409 reply-collision (with newMessages) ' +
    'when lastSeenMessageId is given and the customer or another agent wrote since, unless force is true; ' +
    '409 too-many-scheduled-replies when 10 replies wait already.',
  security,
  request: {
    params: idParams,
    headers: IdempotencyHeadersSchema,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: ReplyInputSchema,
        },
      },
    },
  },
  responses: {
    201: {
      description: 'In the outbox, being sent (or waiting until scheduledFor)',
      content: { 'application/json': { schema: SentReplySchema } },
    },
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

const resolveRoute = createRoute({
  method: 'post',
  path: '/v1/conversations/{conversationId}/resolve',
  operationId: 'resolveConversation',
  tags: ['Conversations'],
  summary: 'Resolve the conversation; the CSAT survey follows when the channel has it on',
  security,
  request: { params: idParams },
  responses: {
    200: {
      description: 'Resolved',
      content: { 'application/json': { schema: z.object({ status: StatusSchema }).openapi('Resolved') } },
    },
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

const reopenRoute = createRoute({
  method: 'post',
  path: '/v1/conversations/{conversationId}/reopen',
  operationId: 'reopenConversation',
  tags: ['Conversations'],
  summary: 'Reopen a resolved or closed conversation, back to its previous assignee',
  description:
    'No CSAT survey is sent for the earlier resolution. Without a previous assignee it goes to the queue. ' +
    '409 already-open when it is open.',
  security,
  request: { params: idParams },
  responses: {
    200: {
      description: 'Open again',
      content: {
        'application/json': {
          schema: z
            .object({
              status: StatusSchema,
              assigneeId: z.uuid().nullable().openapi({ description: 'The previous assignee; null while it waits in the queue' }),
            })
            .openapi('Reopened'),
        },
      },
    },
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

const notSpamRoute = createRoute({
  method: 'post',
  path: '/v1/conversations/{conversationId}/not-spam',
  operationId: 'markConversationNotSpam',
  tags: ['Conversations'],
  summary: 'Release a conversation kept as spam: it is routed like a new one (greeting, rules, AI agent, queue)',
  description:
    'A conversation whose first mail failed DMARC at a receiving server the channel trusts, or carried a spam verdict, ' +
    'is kept out of the queue (status spam) and never answered automatically. Releasing it vouches for the sender. ' +
    '409 not-spam when it is not in spam.',
  security,
  request: { params: idParams },
  responses: {
    200: {
      description: 'Released; it is routed within moments',
      content: {
        'application/json': { schema: z.object({ status: StatusSchema, stage: StageSchema }).openapi('ReleasedFromSpam') },
      },
    },
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

const assignmentRoute = createRoute({
  method: 'put',
  path: '/v1/conversations/{conversationId}/assignment',
  operationId: 'assignConversation',
  tags: ['Conversations'],
  summary: 'Assign the conversation to an agent of its channel, or unassign it (assigneeId null)',
  description:
    'Assigning by hand ignores capacity. Unassigning puts the conversation back into the queue, where the ' +
    "channel's strategy gives it to another agent with free capacity.",
  security,
  request: {
    params: idParams,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z.object({ assigneeId: z.uuid().nullable() }).openapi('AssignmentInput'),
        },
      },
    },
  },
  responses: {
    200: {
      description: 'Who has it now (null: waiting in the queue)',
      content: { 'application/json': { schema: z.object({ assigneeId: z.uuid().nullable() }).openapi('Assignment') } },
    },
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

const labelsResponses = {
  200: { description: 'The labels it carries now', content: { 'application/json': { schema: LabelsSchema } } },
  ...problemResponses(401, 403, 404, 422),
};

const putLabelsRoute = createRoute({
  method: 'put',
  path: '/v1/conversations/{conversationId}/labels',
  operationId: 'setConversationLabels',
  tags: ['Conversations'],
  summary: 'Replace the labels of the conversation',
  description: `Each label is trimmed and lower-cased (1–50 characters, no commas); duplicates collapse; at most ${MAX_LABELS}.`,
  security,
  request: {
    params: idParams,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .object({ labels: z.array(LabelSchema).max(MAX_LABELS, `at most ${MAX_LABELS} labels`) })
            .openapi('LabelsInput'),
        },
      },
    },
  },
  responses: labelsResponses,
});

const addLabelRoute = createRoute({
  method: 'post',
  path: '/v1/conversations/{conversationId}/labels',
  operationId: 'addConversationLabel',
  tags: ['Conversations'],
  summary: 'Add one label (nothing changes when it is there already)',
  security,
  request: {
    params: idParams,
    body: {
      required: true,
      content: { 'application/json': { schema: z.object({ label: LabelSchema }).openapi('LabelInput') } },
    },
  },
  responses: labelsResponses,
});

const removeLabelRoute = createRoute({
  method: 'delete',
  path: '/v1/conversations/{conversationId}/labels/{label}',
  operationId: 'removeConversationLabel',
  tags: ['Conversations'],
  summary: 'Remove one label (nothing changes when it is not there)',
  security,
  request: { params: idParams.extend({ label: LabelSchema }) },
  responses: labelsResponses,
});

const noteRoute = createRoute({
  method: 'post',
  path: '/v1/conversations/{conversationId}/notes',
  operationId: 'addConversationNote',
  tags: ['Conversations'],
  summary: 'Add an internal note for the team; it is never mailed',
  security,
  request: {
    params: idParams,
    headers: IdempotencyHeadersSchema,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z.object({ text: z.string().trim().min(1, 'the note is empty').max(10_000) }).openapi('NoteInput'),
        },
      },
    },
  },
  responses: {
    201: { description: 'Added', content: { 'application/json': { schema: NoteSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

export function conversationQuery(db: Db, user: AuthenticatedUser) {
  return (
    db
      .selectFrom('conversations as c')
      .innerJoin('contacts as ct', 'ct.id', 'c.contact_id')
      .select([
        'c.id',
        'c.channel_id',
        'c.subject',
        'c.status',
        'c.stage',
        'c.assignee_id',
        'c.ai_agent_id',
        'c.team_id',
        'c.priority',
        'c.labels',
        sql<string>`coalesce(c.language, (select ch.languages->>0 from channels ch where ch.id = c.channel_id), 'en')`.as(
          'language',
        ),
        'c.sla_due_at',
        'c.sla_breached_at',
        'c.first_response_at',
        'c.created_at',
        'c.updated_at',
        'c.resolved_at',
        'ct.id as contact_id',
        'ct.email as contact_email',
        'ct.name as contact_name',
      ])
      .where('c.account_id', '=', user.accountId)
      // Erased conversations are tombstones for reports only.
      .where('c.erased_at', 'is', null)
  );
}

type ConversationRow = Awaited<ReturnType<ReturnType<typeof conversationQuery>['executeTakeFirstOrThrow']>>;

export function toConversation(row: ConversationRow): z.infer<typeof ConversationSchema> {
  return {
    id: row.id,
    channelId: row.channel_id,
    contact: { id: row.contact_id, email: row.contact_email, name: row.contact_name },
    subject: row.subject,
    status: row.status,
    stage: row.stage,
    assigneeId: row.assignee_id,
    aiAgentId: row.ai_agent_id,
    teamId: row.team_id,
    priority: row.priority,
    labels: row.labels,
    language: row.language,
    sla: {
      dueAt: row.sla_due_at?.toISOString() ?? null,
      breachedAt: row.sla_breached_at?.toISOString() ?? null,
      firstResponseAt: row.first_response_at?.toISOString() ?? null,
    },
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    resolvedAt: row.resolved_at?.toISOString() ?? null,
  };
}

const noAddress = () =>
  new Problem(409, 'no-address', 'The contact has no email address', 'set the contact’s email address before mailing them');

/** Spam is kept out of everything until an agent releases it. */
function requireNotSpam(conversation: { status: string }) {
  if (conversation.status === 'spam') {
    throw new Problem(409, 'spam', 'The conversation is in spam', 'release it first with POST /v1/conversations/{id}/not-spam');
  }
}

const alreadyOpen = (conversationId: string) =>
  new Problem(409, 'already-open', 'The conversation is open', `conversation ${conversationId} is open already`);

// What an attachment may name as its type when served: a plain type/subtype, else a download of bytes.
const CONTENT_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/i;

/** RFC 6266: an ASCII fallback name and the exact one in UTF-8. */
function contentDisposition(filename: string): string {
  const fallback = filename.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  const encoded = encodeURIComponent(filename).replace(/['()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

export function conversationRoutes({ db, config, temporal, taskQueue = TASK_QUEUE, clock = Date.now }: ApiDeps) {
  const conversations = createConversationGateway(temporal, { taskQueue });
  /** Another account's conversation answers exactly like a missing one; another channel's is 403 for an agent. */
  async function findConversation(user: AuthenticatedUser, conversationId: string): Promise<ConversationRow> {
    const row = await conversationQuery(db, user).where('c.id', '=', conversationId).executeTakeFirst();
    if (!row) throw new Problem(404, 'not-found', 'Conversation not found', `no conversation ${conversationId}`);
    await requireMembership(db, user, row.channel_id);
    return row;
  }

  /** What the Temporal UI titles a run that a request starts: the channel, the subject and why. */
  async function startOf(conversation: ConversationRow, why: string): Promise<ConversationStart> {
    const channel = await db
      .selectFrom('channels')
      .select('name')
      .where('id', '=', conversation.channel_id)
      .executeTakeFirstOrThrow();
    return {
      conversationId: conversation.id,
      channelId: conversation.channel_id,
      summary: `Conversation on channel '${channel.name}': ${conversation.subject} (${why})`,
    };
  }

  /** Changes the labels under the row lock; a change is put on the timeline. */
  async function changeLabels(user: AuthenticatedUser, conversationId: string, change: (current: string[]) => string[]) {
    await findConversation(user, conversationId);
    return db.transaction().execute(async (trx) => {
      const { labels: current } = await trx
        .selectFrom('conversations')
        .select('labels')
        .where('id', '=', conversationId)
        .forUpdate()
        .executeTakeFirstOrThrow();
      const labels = [...new Set(change(current))];
      if (labels.length > MAX_LABELS) {
        throw new Problem(422, 'validation', 'Request validation failed', 'too many labels', [
          { field: 'label', message: `a conversation carries at most ${MAX_LABELS} labels` },
        ]);
      }
      const added = labels.filter((label) => !current.includes(label));
      const removed = current.filter((label) => !labels.includes(label));
      if (added.length > 0 || removed.length > 0) {
        await trx
          .updateTable('conversations')
          .set({ labels: JSON.stringify(labels), updated_at: sql<Date>`now()` })
          .where('id', '=', conversationId)
          .execute();
        await recordEvent(trx, conversationId, 'labels_changed', { byId: user.id, added, removed, labels });
      }
      return { labels };
    });
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(listRoute, async (c) => {
    const user = c.get('user');
    const query = c.req.valid('query');
    let rows = conversationQuery(db, user)
      .where('c.channel_id', 'in', accessibleChannelIds(db, user))
      .orderBy('c.created_at', 'desc')
      .orderBy('c.id', 'desc')
      .limit(query.limit + 1);
    if (query.cursor) rows = rows.where(afterCursor('conversations', 'c', decodeCursor(query.cursor)));
    if (query.status) rows = rows.where('c.status', '=', query.status);
    if (query.stage) rows = rows.where('c.stage', '=', query.stage);
    if (query.channelId) rows = rows.where('c.channel_id', '=', query.channelId);
    if (query.assigneeId === 'none') rows = rows.where('c.assignee_id', 'is', null);
    else if (query.assigneeId) rows = rows.where('c.assignee_id', '=', query.assigneeId);
    if (query.contactId) rows = rows.where('c.contact_id', '=', query.contactId);
    if (query.label?.length) rows = rows.where(sql<boolean>`c.labels @> ${JSON.stringify(query.label)}::jsonb`);
    if (query.createdAfter) rows = rows.where('c.created_at', '>', new Date(query.createdAfter));
    if (query.createdBefore) rows = rows.where('c.created_at', '<', new Date(query.createdBefore));
    if (query.updatedAfter) rows = rows.where('c.updated_at', '>', new Date(query.updatedAfter));
    return c.json(toPage(await rows.execute(), query.limit, toConversation), 200);
  });

  app.openapi(getRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const conversation = await findConversation(c.get('user'), conversationId);
    const [inbound, attachments, outbound, events] = await Promise.all([
      db
        .selectFrom('inbound_messages')
        .select([
          'id',
          'message_id',
          'received_via',
          'from_address',
          'subject',
          'text_body',
          'reply_text',
          'html_body',
          'cc_addresses',
          'classification',
          'sender_verdict',
          'sender_verdict_reasons',
          'received_at',
          'sent_at',
        ])
        .where('conversation_id', '=', conversationId)
        .execute(),
      db
        .selectFrom('attachments as a')
        .innerJoin('inbound_messages as m', 'm.id', 'a.inbound_message_id')
        .select([
          'a.id',
          'a.inbound_message_id',
          'a.filename',
          'a.content_type',
          'a.size_bytes',
          'a.inline',
          'a.content_id',
          'a.omitted_reason',
        ])
        .where('m.conversation_id', '=', conversationId)
        .orderBy('a.position')
        .execute(),
      db.selectFrom('outbound_messages').selectAll().where('conversation_id', '=', conversationId).execute(),
      db.selectFrom('conversation_events').selectAll().where('conversation_id', '=', conversationId).orderBy('id').execute(),
    ]);
    const attachmentsOf = (inboundMessageId: string) =>
      attachments
        .filter((a) => a.inbound_message_id === inboundMessageId)
        .map((a) => ({
          id: a.id,
          filename: a.filename,
          contentType: a.content_type,
          sizeBytes: a.size_bytes,
          inline: a.inline,
          contentId: a.content_id,
          omittedReason: a.omitted_reason,
        }));
    const replyFilesOf = await sentReplyFiles(db, conversationId);
    const messages: z.infer<typeof MessageSchema>[] = [
      ...inbound.map((m) => ({
        id: m.id,
        direction: 'inbound' as const,
        kind: 'customer' as const,
        messageId: m.message_id,
        receivedVia: m.received_via,
        from: m.from_address,
        to: null,
        cc: m.cc_addresses,
        bcc: [],
        subject: m.subject,
        text: m.text_body,
        replyText: m.reply_text,
        html: m.html_body,
        attachments: attachmentsOf(m.id),
        classification: m.classification,
        sender: m.sender_verdict ? { verdict: m.sender_verdict, reasons: m.sender_verdict_reasons } : null,
        authorId: null,
        aiAgentId: null,
        at: m.received_at.toISOString(),
        sentAt: m.sent_at?.toISOString() ?? null,
        deliveryStatus: null,
        deliveryError: null,
        scheduledFor: null,
        cancelled: null,
        sentCopy: null,
      })),
      ...outbound.map((m) => ({
        id: m.id,
        direction: 'outbound' as const,
        kind: m.kind,
        messageId: m.message_id,
        receivedVia: null,
        from: m.from_address,
        to: m.to_address,
        cc: m.cc_addresses,
        bcc: m.bcc_addresses,
        subject: m.subject,
        text: m.text_body,
        replyText: m.text_body, // what we send quotes nothing
        html: m.html_body,
        attachments: replyFilesOf(m.id),
        classification: null,
        sender: null,
        authorId: m.author_id,
        aiAgentId: m.ai_agent_id,
        at: m.created_at.toISOString(),
        sentAt: m.sent_at?.toISOString() ?? null,
        deliveryStatus: m.delivery_status,
        deliveryError: m.delivery_error,
        scheduledFor: m.scheduled_for?.toISOString() ?? null,
        cancelled: m.cancelled_at
          ? { at: m.cancelled_at.toISOString(), byId: m.cancelled_by, reason: m.cancel_reason as 'undone' | 'customer_wrote' }
          : null,
        sentCopy: m.sent_copy_status
          ? {
              status: m.sent_copy_status,
              folder: m.sent_copy_folder,
              at: m.sent_copy_at?.toISOString() ?? null,
              error: m.sent_copy_error,
            }
          : null,
      })),
    ].sort((a, b) => a.at.localeCompare(b.at));
    const timeline = events.map((e) => ({ id: String(e.id), type: e.type, data: e.data, at: e.created_at.toISOString() }));
    const notes = events
      .filter((e) => e.type === 'note_added')
      .map((e) => ({
        id: String(e.id),
        authorId: String(e.data.authorId),
        authorName: String(e.data.authorName),
        text: String(e.data.text),
        createdAt: e.created_at.toISOString(),
      }));
    const drafting = await activeDrafts(db, conversationId, clock());
    return c.json({ ...toConversation(conversation), messages, timeline, notes, drafting }, 200);
  });

  app.openapi(attachmentRoute, async (c) => {
    const { conversationId, attachmentId } = c.req.valid('param');
    await findConversation(c.get('user'), conversationId);
    const attachment =
      (await db
        .selectFrom('attachments as a')
        .innerJoin('inbound_messages as m', 'm.id', 'a.inbound_message_id')
        .select(['a.filename', 'a.content_type', 'a.content', 'a.omitted_reason'])
        .where('a.id', '=', attachmentId)
        .where('m.conversation_id', '=', conversationId)
        .executeTakeFirst()) ?? (await replyFileContent(db, conversationId, attachmentId));
    if (!attachment)
      throw new Problem(404, 'not-found', 'Attachment not found', `no attachment ${attachmentId} in this conversation`);
    if (!attachment.content) {
      throw new Problem(
        404,
        'attachment-omitted',
        'The attachment was not stored',
        attachment.omitted_reason ?? 'its bytes were not kept',
      );
    }
    return c.body(new Uint8Array(attachment.content), 200, {
      'content-type': CONTENT_TYPE.test(attachment.content_type) ? attachment.content_type : 'application/octet-stream',
      'content-disposition': contentDisposition(attachment.filename),
      // Customer-supplied bytes: never rendered in the API's origin.
      'x-content-type-options': 'nosniff',
      'content-security-policy': "default-src 'none'; sandbox",
    });
  });

  app.openapi(replyRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const input = c.req.valid('json');
    const { subject } = input;
    const user = c.get('user');
    const conversation = await findConversation(user, conversationId);
    requireNotSpam(conversation);
    if (!conversation.contact_email) throw noAddress();
    const lastSeenMessageId = input.force ? undefined : input.lastSeenMessageId;
    if (lastSeenMessageId) {
      const written = await newSince(db, conversationId, lastSeenMessageId, user.id);
      if (written.length > 0) throw collision(written);
    }
    const timing = await replyTiming(db, conversation, input.sendAt, clock());
    // A repeat with the same Idempotency-Key (the first answer was lost, or timed out) is the same update: sent once.
    const idempotencyKey = c.req.header('idempotency-key');
    // Recipients and files resolved as the preview resolves them; the workflow passes them to the outbox as they are.
    const { text, content } = await resolveReply(
      db,
      config.INBOUND_DOMAIN,
      { id: conversationId, channelId: conversation.channel_id, contactEmail: conversation.contact_email },
      input,
      { repeatable: Boolean(idempotencyKey) },
    );
    const sent = await conversations
      .reply(
        conversationId,
        {
          author: { id: user.id, name: user.name },
          text,
          ...(subject ? { subject } : {}),
          content,
          ...timing,
          ...(lastSeenMessageId ? { lastSeenMessageId } : {}),
        },
        idempotencyKey ? `reply:${user.id}:${idempotencyKey}` : undefined,
      )
      .catch(async (error: unknown) => {
        // Someone's reply was written between the check above and this one's: the guard where replies are written refused it.
        if (lastSeenMessageId && error instanceof ConversationStateError && error.type === 'ReplyCollision') {
          throw collision(await newSince(db, conversationId, lastSeenMessageId, user.id));
        }
        throw error;
      });
    await releaseDraft(db, conversationId, user.id);
    return c.json(sent, 201);
  });

  app.openapi(resolveRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const user = c.get('user');
    requireNotSpam(await findConversation(user, conversationId));
    return c.json(await conversations.resolve(conversationId, { id: user.id, name: user.name }), 200);
  });

  app.openapi(reopenRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const user = c.get('user');
    const conversation = await findConversation(user, conversationId);
    requireNotSpam(conversation);
    if (conversation.status === 'open') throw alreadyOpen(conversationId);
    // The running workflow reopens it; a closed conversation whose run has ended starts again for it.
    const start = await startOf(conversation, `reopened by ${user.name}`);
    try {
      const reopened = await conversations.reopen(start, { id: user.id, name: user.name });
      return c.json({ status: reopened.status, assigneeId: reopened.assignee?.id ?? null }, 200);
    } catch (error) {
      if (error instanceof ConversationStateError && error.type === 'ConversationOpen') throw alreadyOpen(conversationId);
      throw error;
    }
  });

  app.openapi(notSpamRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const user = c.get('user');
    const conversation = await findConversation(user, conversationId);
    const released = await db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('conversations')
        .set({ status: 'open', stage: 'triage', updated_at: sql<Date>`now()` })
        .where('id', '=', conversationId)
        .where('status', '=', 'spam')
        .returning('id')
        .executeTakeFirst();
      if (row) await recordEvent(trx, conversationId, 'released_from_spam', { by: user.id, byName: user.name });
      return Boolean(row);
    });
    // Released before, but its workflow was not reached (a 503): asking again starts the routing.
    const releasedBefore =
      !released &&
      conversation.status === 'open' &&
      conversation.stage === 'triage' &&
      (await db
        .selectFrom('conversation_events')
        .select('id')
        .where('conversation_id', '=', conversationId)
        .where('type', '=', 'released_from_spam')
        .executeTakeFirst()) !== undefined;
    if (!released && !releasedBefore) {
      throw new Problem(409, 'not-spam', 'The conversation is not in spam', `its status is ${conversation.status}`);
    }
    // Its run ended while it was spam: started again, it routes the conversation as triage does a new one.
    await conversations.releaseFromSpam(await startOf(conversation, `released from spam by ${user.name}`), {
      id: user.id,
      name: user.name,
    });
    return c.json({ status: 'open' as const, stage: 'triage' as const }, 200);
  });

  app.openapi(assignmentRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const { assigneeId } = c.req.valid('json');
    const user = c.get('user');
    const conversation = await findConversation(user, conversationId);
    requireNotSpam(conversation);
    let assignee = null;
    if (assigneeId) {
      const agent = await db
        .selectFrom('channel_agents as ca')
        .innerJoin('users as u', 'u.id', 'ca.user_id')
        .select(['u.id', 'u.name'])
        .where('ca.channel_id', '=', conversation.channel_id)
        .where('u.id', '=', assigneeId)
        .executeTakeFirst();
      if (!agent) {
        throw new Problem(422, 'validation', 'Request validation failed', 'the assignee is not an agent of this channel', [
          { field: 'assigneeId', message: `user ${assigneeId} is not an agent of this conversation's channel` },
        ]);
      }
      assignee = { id: agent.id, name: agent.name };
    }
    const result = await conversations.assign(conversationId, assignee, { id: user.id, name: user.name });
    return c.json({ assigneeId: result.assignee?.id ?? null }, 200);
  });

  app.openapi(putLabelsRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const { labels } = c.req.valid('json');
    return c.json(await changeLabels(c.get('user'), conversationId, () => labels), 200);
  });

  app.openapi(addLabelRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const { label } = c.req.valid('json');
    return c.json(await changeLabels(c.get('user'), conversationId, (current) => [...current, label]), 200);
  });

  app.openapi(removeLabelRoute, async (c) => {
    const { conversationId, label } = c.req.valid('param');
    return c.json(await changeLabels(c.get('user'), conversationId, (current) => current.filter((l) => l !== label)), 200);
  });

  app.openapi(noteRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const { text } = c.req.valid('json');
    const user = c.get('user');
    await findConversation(user, conversationId);
    const event = await db.transaction().execute(async (trx) => {
      const added = await recordEvent(trx, conversationId, 'note_added', { authorId: user.id, authorName: user.name, text });
      await trx
        .updateTable('conversations')
        .set({ updated_at: sql<Date>`now()` })
        .where('id', '=', conversationId)
        .execute();
      return added;
    });
    return c.json(
      { id: String(event.id), authorId: user.id, authorName: user.name, text, createdAt: event.created_at.toISOString() },
      201,
    );
  });

  return app;
}
