import { createHash, randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { sql, type Insertable } from 'kysely';
import { recordPathFailure, type MailPath, type PathFailure } from '../db/channel-health.js';
import type { Db } from '../db/connection.js';
import type { Channel, InboundMessage, InboundMessagesTable } from '../db/schema.js';
import type { InboundSource, MailClassification } from '../domain/conversation.js';
import type { SenderTrust, SenderVerdictKind } from '../domain/sender-verdict.js';
import { chooseThread, isChannelAddress, referencedMessageIds, replyTokenIn, type ThreadCandidate } from '../domain/threading.js';
import {
  dedupeKey,
  NOT_MIME,
  ParserBusyError,
  parseMail,
  readHeaderSection,
  UnparseableMailError,
  type ParsedAttachment,
  type ParsedMail,
} from '../mail/parse.js';
import { recordEvent } from '../activities/timeline.js';
import { mailsQuarantined, mailsReceived, timeIngestStep, type MailOutcome } from '../observability/metrics.js';
import { markBounced } from '../activities/delivery-status.js';
import { customerMessageFacts } from '../domain/customer-intent.js';
import { ownAddressesOf } from '../domain/forwarding-address.js';
import { forwardingConfirmationIn, type ForwardingConfirmation } from '../domain/forwarding-confirmation.js';
import { detectLanguage } from '../domain/language-detection.js';
import { createConversationGateway, WorkflowsUnavailableError } from '../temporal/gateway.js';
import { TASK_QUEUE } from '../workflows/ids.js';

/** What the ingest reads back of a stored mail: everything but the parsed fields. */
const STORED_COLUMNS = ['id', 'message_id', 'status', 'conversation_id', 'signalled_at', 'rejection_reason'] as const;
type StoredMail = Pick<InboundMessage, (typeof STORED_COLUMNS)[number] | 'raw'>;

/** Thrown inside the threading transaction to roll it back: another delivery of the mail threaded it first. */
class ThreadedMeanwhile extends Error {}

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

const FORWARDING_CONFIRMATION_REASON =
  "a mail provider's forwarding confirmation: listed under the channel's forwarding confirmations, not a conversation";

/**
 * The mail is a provider's forwarding confirmation (Gmail's code and link): kept for the channel's admins under
 * its forwarding confirmations, never a conversation and never answered. Delivered as well as it can be.
 */
export class ForwardingConfirmationError extends MailRejectedError {
  override name = 'ForwardingConfirmationError';
  constructor(
    inboundMessageId: string,
    readonly forwardingConfirmationId: string,
  ) {
    super(inboundMessageId, FORWARDING_CONFIRMATION_REASON);
  }
}

/** The mail is stored, but every parser thread is busy; delivering it again in a moment completes it. */
export { ParserBusyError } from '../mail/parse.js';

/** The mail is stored, but its conversation workflow could not be reached; posting again completes it. */
export { WorkflowsUnavailableError } from '../temporal/gateway.js';

/**
 * A stored mail that cannot be resumed on its own: a web-form submission that was never threaded, whose
 * contact only its request knows (repeating that request with its Idempotency-Key completes it).
 */
export class MailNotResumableError extends Error {
  override name = 'MailNotResumableError';
}

export interface IngestOptions {
  via?: InboundSource;
  /**
   * A web-form submission without an address (A3): its contact, created by the caller with email null.
   * The mail's From is then a placeholder: it neither finds a contact nor is kept as the sender.
   */
  contactId?: string;
  /** Existing mail a mailbox import brings in: stored and threaded, never answered automatically. */
  imported?: boolean;
  /** Where an IMAP mail sits on the server. */
  source?: MailSource;
}

export interface MailSource {
  folder: string;
  uidValidity: bigint;
  uid: number;
}

/** An IMAP mail known only by what the server says about it before the download. */
export interface UndownloadedMail {
  /** The envelope's Message-ID, or a stable key from folder, UIDVALIDITY and UID when it has none. */
  messageId: string;
  /** RFC822.SIZE. */
  sizeBytes: number;
  source: MailSource;
  imported?: boolean;
}

export interface IngestDeps {
  db: Db;
  temporal: Client;
  /** How long to wait for Temporal before answering "unavailable". */
  temporalTimeoutMs?: number;
  /** Tests give each worker its own queue; everything else uses the default. */
  taskQueue?: string;
  /** INBOUND_DOMAIN: a channel's forwarding address under it is one of the channel's own addresses. */
  inboundDomain?: string;
}

/** What the conversation's workflow is told about a mail: from its parse, or from its stored row when resumed. */
interface SignalledMail {
  subject: string;
  classification: MailClassification;
  senderVerdict: SenderVerdictKind;
  text: string | null;
  /** The new part of the text, without the quoted history. */
  replyText: string | null;
}

/**
 * The one path every inbound mail takes, from the forwarder endpoint, the SMTP receiver or an IMAP mailbox:
 * store raw → parse → contact and thread → signal the conversation workflow. Each step can be
 * repeated: a second delivery of the same mail resumes where the first stopped and creates nothing twice.
 */
/** Whose Authentication-Results and spam flags the channel believes (its receiving servers'). */
function senderTrustOf(channel: Channel): SenderTrust {
  return {
    trustedAuthservIds: channel.trusted_authserv_ids,
    trustUnnamedAuthenticationResults: channel.trust_unnamed_authentication_results,
    trustSpamHeaders: channel.trust_spam_headers,
  };
}

/** The ways in whose failures each mail reports (IMAP reports per session, not per mail). */
const FAILURE_PATH_OF: Partial<Record<InboundSource, MailPath>> = { forwarder: 'forwarder', smtp: 'smtp_receiver' };

function pathFailureOf(error: unknown): PathFailure {
  if (error instanceof WorkflowsUnavailableError) {
    return {
      reason: 'workflows_unavailable',
      message: 'Temporal could not be reached: the mail is stored and handed over later',
    };
  }
  if (error instanceof ParserBusyError) {
    return { reason: 'busy', message: 'every parser thread was busy: the mail is stored and handed over later' };
  }
  return {
    reason: 'storage_unavailable',
    message: 'the mail could not be stored or threaded; its sender is asked to deliver it again',
  };
}

export function createIngest({ db, temporal, temporalTimeoutMs, taskQueue = TASK_QUEUE, inboundDomain }: IngestDeps) {
  const conversations = createConversationGateway(temporal, {
    taskQueue,
    ...(temporalTimeoutMs ? { deadlineMs: temporalTimeoutMs } : {}),
  });
  /**
   * Stores a received mail once per channel and Message-ID, in one round trip when it is new: the row comes back
   * without its bytes, which the caller holds. A second delivery reads the first one's row, its stored bytes included.
   */
  async function storeOnce(row: Insertable<InboundMessagesTable>): Promise<StoredMail> {
    const inserted = await db
      .insertInto('inbound_messages')
      .values(row)
      .onConflict((oc) => oc.columns(['channel_id', 'message_id']).doNothing())
      .returning(STORED_COLUMNS)
      .executeTakeFirst();
    if (inserted) return { ...inserted, raw: row.raw ?? null };
    return db
      .selectFrom('inbound_messages')
      .select([...STORED_COLUMNS, 'raw'])
      .where('channel_id', '=', row.channel_id)
      .where('message_id', '=', row.message_id)
      .executeTakeFirstOrThrow();
  }

  async function storeRaw(channel: Channel, raw: Buffer, via: InboundSource, options: IngestOptions): Promise<StoredMail> {
    const headers = readHeaderSection(raw);
    // Bytes that are no mail at all are still kept for an operator, keyed by their hash.
    const messageId = headers ? dedupeKey(headers, raw) : `<${createHash('sha256').update(raw).digest('hex')}@not-mime.invalid>`;
    // Quarantined before any parsing: kept raw with the reason, reprocessable once the limit is raised.
    const rejection = !headers
      ? NOT_MIME
      : raw.length > channel.max_inbound_bytes
        ? `too large: ${raw.length} bytes, the channel accepts ${channel.max_inbound_bytes}`
        : null;
    return storeOnce({
      id: randomUUID(),
      channel_id: channel.id,
      message_id: messageId,
      raw,
      size_bytes: raw.length,
      status: rejection ? 'rejected' : 'received',
      rejection_reason: rejection,
      received_via: via,
      imported: options.imported ?? false,
      source_folder: options.source?.folder ?? null,
      source_uid_validity: options.source?.uidValidity ?? null,
      source_uid: options.source?.uid ?? null,
    });
  }

  /**
   * The sender's contact, created on their first mail, read in the threading transaction under a share lock: many
   * mails from one sender share it without waiting for each other, and an erasure taking the address (its first step
   * waits for the lock) is either seen whole, the address gone and a new contact made, or waits for this commit.
   */
  async function senderContact(trx: Db, accountId: string, from: ParsedMail['from']): Promise<string> {
    const find = () =>
      trx
        .selectFrom('contacts')
        .select(['id', 'name'])
        .where('account_id', '=', accountId)
        .where('email', '=', from.address)
        .forShare()
        .executeTakeFirst();
    const existing = await find();
    if (existing) {
      // A contact first seen without a display name takes the first one a later mail brings.
      if (!existing.name && from.name) {
        await trx
          .updateTable('contacts')
          .set({ name: from.name })
          .where('id', '=', existing.id)
          .where('name', 'is', null)
          .execute();
      }
      return existing.id;
    }
    const created = await trx
      .insertInto('contacts')
      .values({ id: randomUUID(), account_id: accountId, email: from.address, name: from.name })
      .onConflict((oc) => oc.columns(['account_id', 'email']).doNothing())
      .returning('id')
      .executeTakeFirst();
    // Another mail of a new sender created it meanwhile (its insert waited for that commit).
    return created?.id ?? (await find())!.id;
  }

  /**
   * The conversation this mail belongs to, if any, and how it was found; the rule is chooseThread's:
   * the reply token, a bounce's returned message, then In-Reply-To and References, each only for a
   * sender who already takes part in that conversation (bounces excepted).
   */
  async function findThread(trx: Db, channel: Channel, mail: ParsedMail): Promise<ThreadCandidate | undefined> {
    const candidates: ThreadCandidate[] = [];
    const recipients = [...mail.to, ...mail.cc].map((recipient) => recipient.address);
    const own = ownAddressesOf(channel, inboundDomain);
    const token = replyTokenIn(recipients, own);
    if (token) {
      const byToken = await trx
        .selectFrom('conversations')
        .select('id')
        .where('channel_id', '=', channel.id)
        .where('reply_token', '=', token)
        .where('erased_at', 'is', null)
        .executeTakeFirst();
      if (byToken) candidates.push({ conversationId: byToken.id, via: 'reply_token' });
    }
    // Anyone can write a bounce naming a customer's Message-ID; only we know the ids of the mail we sent.
    const isBounce = mail.classification === 'bounce';
    for (const conversationId of await conversationsOfMessages(trx, channel.id, mail.returnedMessageIds, isBounce)) {
      candidates.push({ conversationId, via: 'returned_message' });
    }
    for (const conversationId of await conversationsOfMessages(
      trx,
      channel.id,
      referencedMessageIds(mail.inReplyTo, mail.references),
      isBounce,
    )) {
      candidates.push({ conversationId, via: 'reference' });
    }
    if (candidates.length === 0) return undefined;
    const senderParticipatesIn =
      isBounce || isChannelAddress(mail.from.address, own)
        ? new Set<string>()
        : await conversationsWithParticipant(
            trx,
            candidates.map((candidate) => candidate.conversationId),
            mail.from.address,
          );
    return chooseThread(candidates, { isBounce, senderParticipatesIn });
  }

  /** The conversations of these Message-IDs among this channel's mails (or only those it sent), in the order of the ids. */
  async function conversationsOfMessages(
    trx: Db,
    channelId: string,
    messageIds: readonly string[],
    sentByUsOnly: boolean,
  ): Promise<string[]> {
    if (messageIds.length === 0) return [];
    // Never an erased conversation: its messages are still there while its erasure runs.
    const received = sql<{ conversation_id: string; message_id: string }>`
      select m.conversation_id, m.message_id from inbound_messages m
        join conversations c on c.id = m.conversation_id
        where m.channel_id = ${channelId} and c.erased_at is null and m.message_id in (${sql.join(messageIds)})
      union all`;
    const { rows } = await sql<{ conversation_id: string; message_id: string }>`
      ${sentByUsOnly ? sql`` : received}
      select o.conversation_id, o.message_id from outbound_messages o
        join conversations c on c.id = o.conversation_id
        where c.channel_id = ${channelId} and c.erased_at is null and o.message_id in (${sql.join(messageIds)})`.execute(trx);
    const byMessageId = new Map(rows.map((row) => [row.message_id, row.conversation_id]));
    return [...new Set(messageIds.flatMap((id) => byMessageId.get(id) ?? []))];
  }

  /** Which of the conversations have this address as contact, or as From, To or Cc of a mail on them. */
  async function conversationsWithParticipant(trx: Db, conversationIds: string[], address: string): Promise<Set<string>> {
    const asJson = JSON.stringify([address]);
    const { rows } = await sql<{ id: string }>`
      select c.id from conversations c join contacts ct on ct.id = c.contact_id
        where c.id in (${sql.join([...new Set(conversationIds)])})
          and (ct.email = ${address} or exists (
            select 1 from inbound_messages m
              where m.conversation_id = c.id and m.status = 'threaded'
                and (m.from_address = ${address} or m.to_addresses @> ${asJson}::jsonb or m.cc_addresses @> ${asJson}::jsonb)))`.execute(
      trx,
    );
    return new Set(rows.map((row) => row.id));
  }

  /** Attachments in rows of their own; one over the channel's limit keeps its metadata and a note, not its bytes. */
  async function storeAttachments(trx: Db, channel: Channel, inboundMessageId: string, attachments: readonly ParsedAttachment[]) {
    if (attachments.length === 0) return;
    const limit = channel.max_attachment_bytes;
    await trx
      .insertInto('attachments')
      .values(
        attachments.map((attachment, position) => {
          const tooLarge = attachment.size > limit;
          return {
            id: randomUUID(),
            inbound_message_id: inboundMessageId,
            position,
            filename: attachment.filename,
            content_type: attachment.contentType,
            size_bytes: attachment.size,
            content_id: attachment.contentId,
            inline: attachment.inline,
            sha256: attachment.sha256,
            content: tooLarge ? null : Buffer.from(attachment.content.buffer, attachment.content.byteOffset, attachment.size),
            omitted_reason: tooLarge
              ? `not stored: ${attachment.size} bytes is over this channel's attachment limit of ${limit} bytes; the original mail keeps it`
              : null,
          };
        }),
      )
      .onConflict((oc) => oc.columns(['inbound_message_id', 'position']).doNothing())
      .execute();
  }

  /** Parses the stored mail and files it into a conversation, in one transaction. */
  async function thread(
    channel: Channel,
    stored: StoredMail,
    knownContactId: string | undefined,
  ): Promise<{ conversationId: string; mail: ParsedMail; spam: boolean }> {
    let mail: ParsedMail;
    // Only IMAP mail quarantined by its size lacks its bytes; the mailbox fetches them when it is reprocessed.
    if (!stored.raw) throw new MailRejectedError(stored.id, stored.rejection_reason ?? 'the mail was not downloaded');
    try {
      mail = await parseMail(stored.raw, stored.message_id, senderTrustOf(channel));
    } catch (error) {
      if (!(error instanceof UnparseableMailError)) throw error;
      await db
        .updateTable('inbound_messages')
        .set({ status: 'rejected', rejection_reason: error.message })
        .where('id', '=', stored.id)
        .execute();
      throw new MailRejectedError(stored.id, error.message);
    }
    // Before any contact or conversation: a confirmation is for the admins, and its sender is no customer.
    const confirmation = knownContactId ? null : forwardingConfirmationIn(mail);
    if (confirmation) throw await keepForwardingConfirmation(channel, stored, mail, confirmation);
    // A delivery that stopped after threading (Temporal was away) only needs its signal, which the parse feeds.
    if (stored.status === 'threaded' && stored.conversation_id) {
      return { conversationId: stored.conversation_id, mail, spam: false };
    }
    const threaded = await timeIngestStep('thread_transaction', () =>
      db
        .transaction()
        .execute(async (trx) => {
          const contactId = knownContactId ?? (await senderContact(trx, channel.account_id, mail.from));
          const existing = await findThread(trx, channel, mail);
          const conversationId = existing?.conversationId ?? randomUUID();
          // A conversation a spam mail starts is kept out of the queue until an agent releases it.
          const spam = !existing && mail.senderVerdict.kind === 'spam';
          if (!existing) {
            await trx
              .insertInto('conversations')
              .values({
                id: conversationId,
                account_id: channel.account_id,
                channel_id: channel.id,
                contact_id: contactId,
                subject: mail.subject || '(no subject)',
                status: spam ? 'spam' : 'open',
                stage: spam ? 'spam' : 'triage',
                updated_at: new Date(),
                // The customer's language, among the channel's, from their first mail; null: the channel's first.
                language: detectLanguage(`${mail.subject}\n${mail.replyText ?? mail.text ?? ''}`, channel.languages),
              })
              .execute();
          }
          const claimed = await trx
            .updateTable('inbound_messages')
            .set({
              status: 'threaded',
              conversation_id: conversationId,
              classification: mail.classification,
              from_address: knownContactId ? null : mail.from.address,
              from_name: mail.from.name,
              subject: mail.subject,
              text_body: mail.text,
              reply_text: mail.replyText,
              html_body: mail.html,
              to_addresses: JSON.stringify(mail.to.map((recipient) => recipient.address)),
              cc_addresses: JSON.stringify(mail.cc.map((recipient) => recipient.address)),
              sender_verdict: mail.senderVerdict.kind,
              sender_verdict_reasons: JSON.stringify(mail.senderVerdict.reasons),
              returned_message_id: mail.returnedMessageIds[0] ?? null,
              in_reply_to: mail.inReplyTo ?? null,
              reference_ids: JSON.stringify(mail.references),
              sent_at: mail.date,
            })
            .where('id', '=', stored.id)
            // Two deliveries of one mail at once: the second waits for the first's commit here, then rolls back.
            .where('status', '=', 'received')
            .returning('id')
            .executeTakeFirst();
          if (!claimed) throw new ThreadedMeanwhile();
          await storeAttachments(trx, channel, stored.id, mail.attachments);
          await markBounced(trx, { channelId: channel.id, inboundMessageId: stored.id, mail });
          await recordEvent(trx, conversationId, 'customer_message', {
            inboundMessageId: stored.id,
            classification: mail.classification,
            threadedBy: existing?.via ?? 'new_conversation',
            ...(mail.senderVerdict.kind === 'ordinary' ? {} : { senderVerdict: mail.senderVerdict }),
          });
          if (spam) await recordEvent(trx, conversationId, 'marked_spam', { reasons: mail.senderVerdict.reasons });
          return { conversationId, mail, spam };
        })
        .catch((error: unknown) => {
          if (error instanceof ThreadedMeanwhile) return undefined;
          throw error;
        }),
    );
    if (threaded) return threaded;
    // Another delivery of the same mail threaded it first: this one rolled back and joins its conversation.
    const current = await db
      .selectFrom('inbound_messages')
      .select(['conversation_id'])
      .where('id', '=', stored.id)
      .executeTakeFirstOrThrow();
    return { conversationId: current.conversation_id!, mail, spam: false };
  }

  /** Lists the confirmation for the channel's admins and takes the mail out of every path to a conversation. */
  async function keepForwardingConfirmation(
    channel: Channel,
    stored: StoredMail,
    mail: ParsedMail,
    confirmation: ForwardingConfirmation,
  ): Promise<ForwardingConfirmationError> {
    const id = await db.transaction().execute(async (trx) => {
      await trx
        .insertInto('forwarding_confirmations')
        .values({
          id: randomUUID(),
          channel_id: channel.id,
          inbound_message_id: stored.id,
          provider: confirmation.provider,
          sender: mail.from.address,
          subject: mail.subject,
          requested_by: confirmation.requestedBy,
          confirmation_code: confirmation.code,
          confirmation_url: confirmation.url,
        })
        .onConflict((oc) => oc.column('inbound_message_id').doNothing())
        .execute();
      await trx
        .updateTable('inbound_messages')
        .set({
          status: 'rejected',
          rejection_reason: FORWARDING_CONFIRMATION_REASON,
          from_address: mail.from.address,
          subject: mail.subject,
        })
        .where('id', '=', stored.id)
        .execute();
      return (
        await trx
          .selectFrom('forwarding_confirmations')
          .select('id')
          .where('inbound_message_id', '=', stored.id)
          .executeTakeFirstOrThrow()
      ).id;
    });
    return new ForwardingConfirmationError(stored.id, id);
  }

  /** A rejected mail as its delivery answers it: a forwarding confirmation is delivered, anything else refused. */
  async function rejectedError(stored: StoredMail): Promise<MailRejectedError> {
    const confirmation = await db
      .selectFrom('forwarding_confirmations')
      .select('id')
      .where('inbound_message_id', '=', stored.id)
      .executeTakeFirst();
    if (confirmation) return new ForwardingConfirmationError(stored.id, confirmation.id);
    return new MailRejectedError(stored.id, stored.rejection_reason ?? 'rejected');
  }

  /** Hands the mail to its conversation's workflow with what ingest learned about it, so the workflow reads nothing back. */
  async function signalConversation(
    channel: Channel,
    conversationId: string,
    inboundMessageId: string,
    mail: SignalledMail,
    via: InboundSource,
    spam: boolean,
  ) {
    const text = mail.replyText ?? mail.text ?? '';
    const facts = customerMessageFacts(
      { classification: mail.classification, senderVerdict: mail.senderVerdict, text },
      channel.languages,
    );
    await conversations.deliverMail(
      {
        conversationId,
        channelId: channel.id,
        summary: `${via === 'form' ? 'Web-form' : 'Email'} conversation on channel '${channel.name}': ${mail.subject || '(no subject)'}`,
      },
      { inboundMessageId, facts },
      { spam },
    );
    await db.updateTable('inbound_messages').set({ signalled_at: new Date() }).where('id', '=', inboundMessageId).execute();
  }

  /** From the stored raw mail on: parse, thread, signal; what an earlier delivery finished is not done again. */
  async function completeStored(
    channel: Channel,
    stored: StoredMail,
    via: InboundSource,
    contactId: string | undefined,
  ): Promise<IngestResult> {
    if (stored.status === 'rejected') throw await rejectedError(stored);
    if (stored.signalled_at && stored.conversation_id) {
      return { inboundMessageId: stored.id, conversationId: stored.conversation_id, duplicate: true };
    }
    const { conversationId, mail, spam } = await thread(channel, stored, contactId);
    await timeIngestStep('signal', () =>
      signalConversation(channel, conversationId, stored.id, { ...mail, senderVerdict: mail.senderVerdict.kind }, via, spam),
    );
    return { inboundMessageId: stored.id, conversationId, duplicate: false };
  }

  return {
    async ingestRawMail(channel: Channel, raw: Buffer, options: IngestOptions = {}): Promise<IngestResult> {
      const via = options.via ?? 'forwarder';
      try {
        const stored = await timeIngestStep('store_raw', () => storeRaw(channel, raw, via, options));
        const result = await completeStored(channel, stored, via, options.contactId);
        mailsReceived.inc({ via, outcome: result.duplicate ? 'duplicate' : 'accepted' });
        return result;
      } catch (error) {
        countFailedMail(via, error);
        // A mail that cannot become a conversation is the mail's trouble, not its path's. A mail handed over is the
        // path's success, read from the mail itself (src/db/channel-health.ts).
        const path = FAILURE_PATH_OF[via];
        if (path && !(error instanceof MailRejectedError)) {
          await recordPathFailure(db, channel.id, path, pathFailureOf(error)).catch(() => undefined);
        }
        throw error;
      }
    },

    /**
     * Finishes a stored mail whose delivery stopped on the way (the process died, the parser pool was busy,
     * Temporal was away): a `received` one goes on from its parse; a `threaded` one is handed to its conversation
     * as a fresh delivery hands it, from what its row keeps. Repeating it is harmless: the workflow drops a mail it
     * was given before. For the mail reconciler, and for a reprocess through the API.
     */
    async resumeStored(inboundMessageId: string): Promise<IngestResult> {
      const stored = await db
        .selectFrom('inbound_messages')
        .selectAll()
        .where('id', '=', inboundMessageId)
        .executeTakeFirstOrThrow();
      const channel = await db.selectFrom('channels').selectAll().where('id', '=', stored.channel_id).executeTakeFirstOrThrow();
      if (stored.status === 'threaded' && stored.conversation_id && !stored.signalled_at) {
        // Only the mail that started a conversation makes it spam, and then the conversation says so.
        const conversation = await db
          .selectFrom('conversations')
          .select('status')
          .where('id', '=', stored.conversation_id)
          .executeTakeFirstOrThrow();
        await signalConversation(
          channel,
          stored.conversation_id,
          stored.id,
          {
            subject: stored.subject ?? '',
            classification: stored.classification ?? 'ordinary',
            senderVerdict: stored.sender_verdict ?? 'ordinary',
            text: stored.text_body,
            replyText: stored.reply_text,
          },
          stored.received_via,
          conversation.status === 'spam',
        );
        return { inboundMessageId: stored.id, conversationId: stored.conversation_id, duplicate: false };
      }
      if (stored.status === 'received' && stored.received_via === 'form') {
        throw new MailNotResumableError(
          'a web-form submission that was never threaded is completed by repeating its request with the same Idempotency-Key',
        );
      }
      return completeStored(channel, stored, stored.received_via, undefined);
    },

    /**
     * Quarantines an IMAP mail by the size its server gives (RFC822.SIZE), without its bytes: kept with where it
     * sits, so that reprocessing fetches it by UID. A second call for the same mail changes nothing.
     */
    async quarantineUndownloaded(channel: Channel, mail: UndownloadedMail): Promise<void> {
      mailsReceived.inc({ via: 'imap', outcome: 'quarantined' });
      mailsQuarantined.inc({ via: 'imap' });
      await storeOnce({
        id: randomUUID(),
        channel_id: channel.id,
        message_id: mail.messageId,
        raw: null,
        size_bytes: mail.sizeBytes,
        status: 'rejected',
        rejection_reason: `too large: ${mail.sizeBytes} bytes, the channel accepts ${channel.max_inbound_bytes}; not downloaded`,
        received_via: 'imap',
        imported: mail.imported ?? false,
        source_folder: mail.source.folder,
        source_uid_validity: mail.source.uidValidity,
        source_uid: mail.source.uid,
      });
    },
  };
}

/** How a mail that did not become (part of) a conversation ended, for the metrics. */
function countFailedMail(via: InboundSource, error: unknown): void {
  const outcome: MailOutcome =
    error instanceof ForwardingConfirmationError
      ? 'forwarding_confirmation'
      : error instanceof MailRejectedError
        ? 'quarantined'
        : error instanceof ParserBusyError || error instanceof WorkflowsUnavailableError
          ? 'deferred'
          : 'failed';
  mailsReceived.inc({ via, outcome });
  if (outcome === 'quarantined') mailsQuarantined.inc({ via });
}

export type Ingest = ReturnType<typeof createIngest>;
