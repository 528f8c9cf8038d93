import { createHash, randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import type { OutgoingAttachment } from '../mail/compose.js';
import { loadReplyAttachments, ReplyAttachmentError } from '../mail/reply-content.js';

// The files of an agent's reply on its outbox row: uploads are taken by the reply, files of the customer's mail
// are copied, so that the sent mail keeps its files whatever happens to the upload or the customer's mail later.

/** Gives the reply its files (in the transaction that writes its outbox row); a retry that finds them does nothing. */
export async function attachReplyFiles(
  trx: Transaction<Database>,
  input: { conversationId: string; outboxId: string; attachmentIds: readonly string[] },
): Promise<void> {
  if (input.attachmentIds.length === 0) return;
  const taken = await trx
    .selectFrom('reply_attachments')
    .select('id')
    .where('outbound_message_id', '=', input.outboxId)
    .limit(1)
    .executeTakeFirst();
  if (taken) return;
  const limits = await trx
    .selectFrom('conversations as c')
    .innerJoin('channels as ch', 'ch.id', 'c.channel_id')
    .select(['ch.max_reply_attachments', 'ch.max_reply_attachment_bytes'])
    .where('c.id', '=', input.conversationId)
    .executeTakeFirstOrThrow();
  let files;
  try {
    files = await loadReplyAttachments(trx, input.conversationId, input.attachmentIds, {
      maxCount: limits.max_reply_attachments,
      maxBytes: limits.max_reply_attachment_bytes,
    });
  } catch (error) {
    // Another reply took the upload meanwhile, or the channel's limits changed: the agent is told, nothing is sent.
    if (error instanceof ReplyAttachmentError) throw ApplicationFailure.nonRetryable(error.detail, 'InvalidAttachment');
    throw error;
  }
  for (const [position, file] of files.entries()) {
    if (file.source === 'upload') {
      await trx
        .updateTable('reply_attachments')
        .set({ outbound_message_id: input.outboxId, position })
        .where('id', '=', file.id)
        .where('outbound_message_id', 'is', null)
        .execute();
    } else {
      await trx
        .insertInto('reply_attachments')
        .values({
          id: randomUUID(),
          conversation_id: input.conversationId,
          outbound_message_id: input.outboxId,
          uploaded_by: null,
          source_attachment_id: file.id,
          position,
          filename: file.filename,
          content_type: file.contentType,
          size_bytes: file.content.length,
          sha256: createHash('sha256').update(file.content).digest('hex'),
          content: file.content,
          complete: true,
        })
        .execute();
    }
  }
}

/** The files an outbox row goes out with, in order. */
export async function replyFilesOf(db: Kysely<Database>, outboxId: string): Promise<OutgoingAttachment[]> {
  const rows = await db
    .selectFrom('reply_attachments')
    .select(['filename', 'content_type', 'content'])
    .where('outbound_message_id', '=', outboxId)
    .orderBy('position')
    .execute();
  return rows.map((row) => ({ filename: row.filename, contentType: row.content_type, content: Buffer.from(row.content) }));
}
