import { createHash, randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { sql } from 'kysely';
import type { Db } from '../db/connection.js';
import type { Channel, InboundMessage } from '../db/schema.js';
import { referencedMessageIds } from '../domain/threading.js';
import { dedupeKey, NOT_MIME, parseMail, readHeaderSection, UnparseableMailError, type ParsedMail } from '../mail/parse.js';
import { recordEvent } from '../activities/timeline.js';
import { conversationWorkflow } from '../workflows/conversation.js';
import { conversationWorkflowId, TASK_QUEUE } from '../workflows/ids.js';
import { inboundMessageSignal } from '../workflows/messages.js';
import { ChannelIdAttribute, StageAttribute, StatusAttribute } from '../workflows/search-attributes.js';

export interface IngestResult {
  inboundMessageId: string;
  conversationId: string;
  /** True when this mail had been ingested before: nothing new was created. */
  duplicate: boolean;
}

/** The mail is kept (raw, with the reason) but cannot become a conversation. */
export class MailRejectedError extends Error {
  override name = 'MailRejectedError';
  constructor(
    readonly inboundMessageId: string,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** The mail is stored, but its conversation workflow could not be reached; posting again completes it. */
export class WorkflowsUnavailableError extends Error {
  override name = 'WorkflowsUnavailableError';
}

export interface IngestDeps {
  db: Db;
  temporal: Client;
  /** How long to wait for Temporal before answering "unavailable". */
  temporalTimeoutMs?: number;
  /** Tests give each worker its own queue; everything else uses the default. */
  taskQueue?: string;
}

/**
 * The one path every inbound mail takes, from the forwarder endpoint or an IMAP mailbox:
 * store raw → parse → contact and thread → signal the conversation workflow. Each step can be
 * repeated: a second delivery of the same mail resumes where the first stopped and creates nothing twice.
 */
export function createIngest({ db, temporal, temporalTimeoutMs = 10_000, taskQueue = TASK_QUEUE }: IngestDeps) {
  async function storeRaw(channelId: string, raw: Buffer): Promise<InboundMessage> {
    const headers = readHeaderSection(raw);
    // Bytes that are no mail at all are still kept for an operator, keyed by their hash.
    const messageId = headers ? dedupeKey(headers, raw) : `<${createHash('sha256').update(raw).digest('hex')}@not-mime.invalid>`;
    await db
      .insertInto('inbound_messages')
      .values({
        id: randomUUID(),
        channel_id: channelId,
        message_id: messageId,
        raw,
        size_bytes: raw.length,
        status: headers ? 'received' : 'rejected',
        rejection_reason: headers ? null : NOT_MIME,
      })
      .onConflict((oc) => oc.columns(['channel_id', 'message_id']).doNothing())
      .execute();
    return db
      .selectFrom('inbound_messages')
      .selectAll()
      .where('channel_id', '=', channelId)
      .where('message_id', '=', messageId)
      .executeTakeFirstOrThrow();
  }

  /**
   * The sender's contact, created on their first mail. Outside the threading transaction and without
   * an upsert, so that many mails from one sender never queue up behind one row lock.
   */
  async function findOrCreateContact(accountId: string, from: ParsedMail['from']): Promise<string> {
    const find = () =>
      db
        .selectFrom('contacts')
        .select(['id', 'name'])
        .where('account_id', '=', accountId)
        .where('email', '=', from.address)
        .executeTakeFirst();
    const existing = await find();
    if (existing) {
      // A contact first seen without a display name takes the first one a later mail brings.
      if (!existing.name && from.name) {
        await db
          .updateTable('contacts')
          .set({ name: from.name })
          .where('id', '=', existing.id)
          .where('name', 'is', null)
          .execute();
      }
      return existing.id;
    }
    await db
      .insertInto('contacts')
      .values({ id: randomUUID(), account_id: accountId, email: from.address, name: from.name })
      .onConflict((oc) => oc.columns(['account_id', 'email']).doNothing())
      .execute();
    return (await find())!.id;
  }

  /** Finds the conversation this mail answers among this channel's messages, most specific reference first. */
  async function findThread(trx: Db, channelId: string, mail: ParsedMail): Promise<string | undefined> {
    const ids = referencedMessageIds(mail.inReplyTo, mail.references);
    if (ids.length === 0) return undefined;
    const { rows } = await sql<{ conversation_id: string; message_id: string }>`
      select conversation_id, message_id from inbound_messages
        where channel_id = ${channelId} and conversation_id is not null and message_id in (${sql.join(ids)})
      union all
      select o.conversation_id, o.message_id from outbound_messages o
        join conversations c on c.id = o.conversation_id
        where c.channel_id = ${channelId} and o.message_id in (${sql.join(ids)})`.execute(trx);
    const byMessageId = new Map(rows.map((row) => [row.message_id, row.conversation_id]));
    return ids.map((id) => byMessageId.get(id)).find((found) => found !== undefined);
  }

  /** Parses the stored mail and files it into a conversation, in one transaction. */
  async function thread(
    channel: Channel,
    stored: InboundMessage,
  ): Promise<{ conversationId: string; isNew: boolean; mail: ParsedMail }> {
    let mail: ParsedMail;
    try {
      mail = await parseMail(stored.raw, stored.message_id);
    } catch (error) {
      if (!(error instanceof UnparseableMailError)) throw error;
      await db
        .updateTable('inbound_messages')
        .set({ status: 'rejected', rejection_reason: error.message })
        .where('id', '=', stored.id)
        .execute();
      throw new MailRejectedError(stored.id, error.message);
    }
    const contactId = await findOrCreateContact(channel.account_id, mail.from);
    return db.transaction().execute(async (trx) => {
      // Serialises two deliveries of the same mail arriving at once.
      const current = await trx
        .selectFrom('inbound_messages')
        .select(['status', 'conversation_id'])
        .where('id', '=', stored.id)
        .forUpdate()
        .executeTakeFirstOrThrow();
      if (current.status === 'threaded' && current.conversation_id)
        return { conversationId: current.conversation_id, isNew: false, mail };

      const existing = await findThread(trx, channel.id, mail);
      const conversationId = existing ?? randomUUID();
      if (!existing) {
        await trx
          .insertInto('conversations')
          .values({
            id: conversationId,
            account_id: channel.account_id,
            channel_id: channel.id,
            contact_id: contactId,
            subject: mail.subject || '(no subject)',
            status: 'open',
            stage: 'triage',
            updated_at: new Date(),
          })
          .execute();
      }
      await trx
        .updateTable('inbound_messages')
        .set({
          status: 'threaded',
          conversation_id: conversationId,
          classification: mail.classification,
          from_address: mail.from.address,
          from_name: mail.from.name,
          subject: mail.subject,
          text_body: mail.text,
          html_body: mail.html,
          in_reply_to: mail.inReplyTo ?? null,
          reference_ids: JSON.stringify(mail.references),
          sent_at: mail.date,
        })
        .where('id', '=', stored.id)
        .execute();
      await recordEvent(trx, conversationId, 'customer_message', {
        inboundMessageId: stored.id,
        classification: mail.classification,
      });
      return { conversationId, isNew: !existing, mail };
    });
  }

  async function signalConversation(channel: Channel, conversationId: string, inboundMessageId: string, subject: string | null) {
    try {
      await temporal.withDeadline(Date.now() + temporalTimeoutMs, () =>
        temporal.workflow.signalWithStart(conversationWorkflow, {
          workflowId: conversationWorkflowId(conversationId),
          taskQueue,
          args: [{ conversationId }],
          signal: inboundMessageSignal,
          signalArgs: [{ inboundMessageId }],
          staticSummary: `Email conversation on channel '${channel.name}': ${subject || '(no subject)'}`,
          staticDetails: `Conversation ${conversationId}, channel ${channel.id}`,
          typedSearchAttributes: [
            { key: ChannelIdAttribute, value: channel.id },
            { key: StatusAttribute, value: 'open' },
            { key: StageAttribute, value: 'triage' },
          ],
        }),
      );
    } catch (error) {
      throw new WorkflowsUnavailableError(`the conversation workflow could not be signalled: ${(error as Error).message}`, {
        cause: error,
      });
    }
    await db.updateTable('inbound_messages').set({ signalled_at: new Date() }).where('id', '=', inboundMessageId).execute();
  }

  return {
    async ingestRawMail(channel: Channel, raw: Buffer): Promise<IngestResult> {
      const stored = await storeRaw(channel.id, raw);
      if (stored.status === 'rejected') throw new MailRejectedError(stored.id, stored.rejection_reason ?? 'rejected');
      if (stored.signalled_at && stored.conversation_id) {
        return { inboundMessageId: stored.id, conversationId: stored.conversation_id, duplicate: true };
      }
      const { conversationId, mail } = await thread(channel, stored);
      await signalConversation(channel, conversationId, stored.id, mail.subject);
      return { inboundMessageId: stored.id, conversationId, duplicate: false };
    },
  };
}

export type Ingest = ReturnType<typeof createIngest>;
