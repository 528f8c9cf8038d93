import { z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import type { Db } from '../db/connection.js';
import {
  loadReplyAttachments,
  replyBody,
  replyRecipients,
  ReplyAttachmentError,
  ReplyRecipientsError,
  type ReplyAttachment,
} from '../mail/reply-content.js';
import type { ReplyContent } from '../workflows/messages.js';
import { Problem } from './problem.js';

// A reply's content as the reply request and its preview take it: HTML, Cc, Bcc and files, resolved once here so
// that the preview shows exactly what the reply then sends.

// Well within what one workflow update may carry, in UTF-8, beside the text.
const MAX_HTML_CHARS = 200_000;

/** The fields a reply request has beside its text and subject. */
export const ReplyContentFields = {
  to: z
    .string()
    .max(320)
    .optional()
    .openapi({
      description:
        'Address the reply to another participant instead of the customer: someone who wrote in the conversation or was copied by ' +
        'one of its replies. Nobody is copied by default then, the customer included: name them in `cc` to keep them in copy.',
    }),
  html: z
    .string()
    .max(MAX_HTML_CHARS)
    .optional()
    .openapi({
      description:
        'HTML of the reply, sanitized by the allowlist inbound mail passes (scripts, styles of other origins and event handlers go); ' +
        'the text part is derived from it unless `text` is given. Sent as multipart/alternative.',
    }),
  cc: z.array(z.string().max(320)).max(100).optional().openapi({
    description:
      "Cc recipients, single mailboxes (at most 10). Left out: the people the customer had in To and Cc of their latest mail, without the channel's and other channels' addresses (none when that mail named more than 20). [] for none.",
  }),
  bcc: z
    .array(z.string().max(320))
    .max(100)
    .optional()
    .openapi({ description: 'Bcc recipients, single mailboxes (at most 10): in the envelope only, never in a header' }),
  attachmentIds: z
    .array(z.uuid())
    .max(100)
    .optional()
    .openapi({
      description:
        'Files to send: ids of uploads (POST /v1/conversations/{conversationId}/attachments) or of attachments of the customer’s mail in this conversation (forwarded). ' +
        "At most the channel's limits.maxReplyAttachments files weighing limits.maxReplyAttachmentBytes together.",
    }),
};

export interface ResolvedReply {
  text: string;
  content: ReplyContent;
  attachments: ReplyAttachment[];
}

/** The reply as it will be sent: its text (derived from the HTML when none was typed), recipients and files; problems named. */
export async function resolveReply(
  db: Db,
  inboundDomain: string,
  conversation: { id: string; channelId: string; contactEmail: string },
  input: {
    text?: string | undefined;
    html?: string | undefined;
    to?: string | undefined;
    cc?: string[];
    bcc?: string[];
    attachmentIds?: string[];
  },
  options: { repeatable?: boolean } = {},
): Promise<ResolvedReply> {
  const body = replyBody(input);
  if (!body.text.trim()) {
    throw new Problem(422, 'validation', 'Request validation failed', 'the reply is empty', [
      { field: input.html !== undefined ? 'html' : 'text', message: 'the reply has no text (HTML without any after sanitizing)' },
    ]);
  }
  let recipients;
  try {
    recipients = await replyRecipients(
      db,
      {
        conversationId: conversation.id,
        channelId: conversation.channelId,
        contactEmail: conversation.contactEmail,
        inboundDomain,
      },
      input,
    );
  } catch (error) {
    if (error instanceof ReplyRecipientsError) {
      throw new Problem(422, 'validation', 'Request validation failed', 'a recipient cannot be mailed', error.problems);
    }
    throw error;
  }
  const limits = await db
    .selectFrom('channels')
    .select(['max_reply_attachments', 'max_reply_attachment_bytes'])
    .where('id', '=', conversation.channelId)
    .executeTakeFirstOrThrow();
  let attachments: ReplyAttachment[];
  try {
    attachments = await loadReplyAttachments(
      db,
      conversation.id,
      input.attachmentIds ?? [],
      {
        maxCount: limits.max_reply_attachments,
        maxBytes: limits.max_reply_attachment_bytes,
      },
      { includeTaken: options.repeatable ?? false },
    );
  } catch (error) {
    if (error instanceof ReplyAttachmentError) {
      if (error.status === 404) throw new Problem(404, 'not-found', 'Attachment not found', error.detail);
      throw new Problem(422, 'attachment-limit', 'Too many attachments', error.detail, [
        { field: 'attachmentIds', message: error.detail },
      ]);
    }
    throw error;
  }
  return {
    text: body.text,
    attachments,
    content: {
      ...(recipients.to ? { to: recipients.to } : {}),
      ...(body.html ? { html: body.html } : {}),
      cc: recipients.cc,
      bcc: recipients.bcc,
      attachmentIds: attachments.map((a) => a.id),
    },
  };
}

/** The files of the conversation's sent replies, per outbound message, as the Message schema lists attachments. */
export async function sentReplyFiles(db: Db, conversationId: string) {
  const rows = await db
    .selectFrom('reply_attachments')
    .select(['id', 'outbound_message_id', 'filename', 'content_type', 'size_bytes'])
    .where('conversation_id', '=', conversationId)
    .where('outbound_message_id', 'is not', null)
    .orderBy('position')
    .execute();
  return (outboundMessageId: string) =>
    rows
      .filter((row) => row.outbound_message_id === outboundMessageId)
      .map((row) => ({
        id: row.id,
        filename: row.filename,
        contentType: row.content_type,
        sizeBytes: row.size_bytes,
        inline: false,
        contentId: null,
        omittedReason: null,
      }));
}

/** A file of a reply (sent, or uploaded and waiting) of this conversation, for download; undefined when none. */
export function replyFileContent(db: Db, conversationId: string, attachmentId: string) {
  return db
    .selectFrom('reply_attachments')
    .select(['filename', 'content_type', 'content', sql<string | null>`null`.as('omitted_reason')])
    .where('id', '=', attachmentId)
    .where('conversation_id', '=', conversationId)
    .where('complete', '=', true)
    .executeTakeFirst();
}
