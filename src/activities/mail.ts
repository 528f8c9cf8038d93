import { ApplicationFailure, Context } from '@temporalio/activity';
import { sql, type Transaction } from 'kysely';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { recordPathFailure, recordPathSuccess, type PathFailure } from '../db/channel-health.js';
import type { Database } from '../db/schema.js';
import type { ConversationStage, ResolvedBy } from '../domain/conversation.js';
import { isSingleMailbox } from '../domain/addresses.js';
import { signCsatToken } from '../domain/csat-token.js';
import { greetingDraft, handoverDraft, opensAtFor, outOfOfficeDraft, surveyDraft } from '../mail/automatic-mail.js';
import { composeMail, InvalidRecipientError } from '../mail/compose.js';
import { draftMail, loadOutgoingContext, threadOf, type DraftInput } from '../mail/outgoing.js';
import { classifySendFailure, isLoginRefused } from '../mail/send-failure.js';
import { DestinationRefusedError, DestinationUnresolvedError } from '../security/destinations.js';
import { type SmtpServer } from '../mail/transport.js';
import { createMailboxLogins, type MailboxLogins } from '../mail/mailbox-login.js';
import { ReauthorizationRequiredError, TokenRefreshFailedError } from '../oauth/access-tokens.js';
import { automaticMailSuppressed, smtpSends } from '../observability/metrics.js';
import { claimDelivery, markFailed, markSent, releaseClaim, renewClaim } from './delivery-status.js';
import type { ActivityDeps } from './deps.js';
import type { ReplyContent } from '../workflows/messages.js';
import { attachReplyFiles, replyFilesOf } from './reply-attachments.js';
import { recordEvent, writeStage } from './timeline.js';
import { holdReply, markFirstResponse, refuseCollision } from './reply-timing.js';

export interface SentMail {
  outboundMessageId: string;
  messageId: string;
}

/**
 * The clock of a send: it tells Temporal it is alive (so a worker that dies mid-send is noticed within a short
 * heartbeat timeout) and renews its lease on the outbox row (so the row is free again soon after that).
 */
export const SEND_HEARTBEAT_EVERY_MS = 5_000;
// An attempt that finds the row being sent looks again this soon at the latest.
const IN_PROGRESS_RETRY_MAX_MS = 10_000;

/** The SMTP server refused the mail for good; the workflow goes on without it. */
function deliveryFailed(outboxId: string, reason: string) {
  return ApplicationFailure.nonRetryable(reason, 'DeliveryFailed', { outboundMessageId: outboxId });
}

/** Runs send with `tick` on the send's clock, and a heartbeat with each tick when it runs as an activity (tests call it directly too). */
async function onSendClock<T>(send: () => Promise<T>, tick: () => Promise<void>): Promise<T> {
  const context = currentActivity();
  context?.heartbeat();
  const clock = setInterval(() => {
    context?.heartbeat();
    // A renewal that fails leaves the lease to run out; the send goes on.
    tick().catch(() => undefined);
  }, SEND_HEARTBEAT_EVERY_MS);
  try {
    return await send();
  } finally {
    clearInterval(clock);
  }
}

/** The activity to heartbeat; none in a test's direct call, nor in a local activity (its task is its heartbeat). */
function currentActivity(): Context | undefined {
  try {
    const context = Context.current();
    return context.info.isLocal ? undefined : context;
  } catch {
    return undefined;
  }
}

/**
 * Outbound mail goes through the outbox: the workflow picks the row id, the activity writes the row
 * once and sends it. A retry finds the row and resends with the same Message-ID, never a second mail.
 */
async function loadMailConversation(trx: Transaction<Database>, conversationId: string) {
  const context = await loadOutgoingContext(trx, conversationId);
  if (!context) throw ApplicationFailure.nonRetryable(`conversation ${conversationId} does not exist`, 'ConversationNotFound');
  const { contactEmail } = context;
  // A3: the API refuses to mail a contact without an address; this is the last line.
  if (!contactEmail)
    throw ApplicationFailure.nonRetryable(`the contact of ${conversationId} has no email address yet`, 'NoAddress');
  if (!isSingleMailbox(contactEmail)) {
    throw ApplicationFailure.nonRetryable(
      `the contact's address of ${conversationId} is not a single mailbox`,
      'InvalidRecipient',
    );
  }
  return { ...context, contactEmail };
}

type MailConversation = Awaited<ReturnType<typeof loadMailConversation>>;

async function aiAgentName(trx: Transaction<Database>, aiAgentId: string): Promise<string> {
  const row = await trx.selectFrom('ai_agents').select('name').where('id', '=', aiAgentId).executeTakeFirst();
  if (!row) throw ApplicationFailure.nonRetryable(`AI agent ${aiAgentId} does not exist`, 'AiAgentNotFound');
  return row.name;
}

export function createMailActivities({ db, mail, publicUrl, secretKey, allowedPrivateNetworks, oauthClients }: ActivityDeps) {
  const logins = createMailboxLogins({ db, secretKey, allowedPrivateNetworks, ...(oauthClients ? { oauthClients } : {}) });
  // How the channel's sending is doing (GET …/health); a report that cannot be written changes nothing here.
  const health = {
    success: (channelId: string) => recordPathSuccess(db, channelId, 'smtp').catch(() => undefined),
    failure: (channelId: string, failure: PathFailure) =>
      recordPathFailure(db, channelId, 'smtp', failure).catch(() => undefined),
  };
  async function writeOutbox(
    trx: Transaction<Database>,
    conversation: MailConversation,
    input: DraftInput & { conversationId: string; authorId?: string; aiAgentId?: string },
  ): Promise<boolean> {
    const draft = draftMail(conversation, await threadOf(trx, input.conversationId), input);
    const written = await trx
      .insertInto('outbound_messages')
      .values({
        id: input.outboxId,
        conversation_id: input.conversationId,
        kind: input.kind,
        message_id: draft.messageId,
        author_id: input.authorId ?? null,
        ai_agent_id: input.aiAgentId ?? null,
        from_name: draft.from.name,
        from_address: draft.from.address,
        to_address: draft.to,
        subject: draft.subject,
        text_body: draft.text,
        in_reply_to: draft.inReplyTo,
        reference_ids: JSON.stringify(draft.references),
        reply_to: draft.replyTo,
        signature_text: draft.signature?.text ?? null,
        signature_html: draft.signature?.html ?? null,
        list_unsubscribe: draft.listUnsubscribe ?? null,
        cc_addresses: JSON.stringify(draft.cc ?? []),
        bcc_addresses: JSON.stringify(draft.bcc ?? []),
        html_body: draft.html ?? null,
      })
      // A retry, or a second greeting for the same conversation, writes nothing.
      .onConflict((oc) => oc.doNothing())
      .returning('id')
      .executeTakeFirst();
    return written !== undefined;
  }

  /**
   * The message as it goes out: rendered once, with the date of the first attempt, and kept on the row (under
   * this attempt's claim); an attempt that read the row before an earlier one kept its bytes gets those.
   */
  async function keepMime(outboxId: string, token: string, composed: Mail.Options): Promise<Uint8Array> {
    const rendered = await new MailComposer({ ...composed, date: new Date() }).compile().build();
    const kept = await db
      .updateTable('outbound_messages')
      .set({ mime: sql<Uint8Array>`coalesce(mime, ${rendered})` })
      .where('id', '=', outboxId)
      .where('claim_token', '=', token)
      .returning('mime')
      .executeTakeFirst();
    if (!kept?.mime) throw new Error(`outgoing mail ${outboxId} lost its claim while being prepared`);
    return kept.mime;
  }

  /**
   * Sends the outbox row unless it went out (or failed) already, through the channel's SMTP server if it has
   * one, under a lease on the row: an attempt that finds another one sending throws DeliveryInProgress
   * (retryable). A refusal for good marks the row failed and throws DeliveryFailed (not retryable); any
   * other failure gives the lease up and throws, to be retried with the same row and Message-ID.
   */
  async function deliver(outboxId: string): Promise<SentMail | null> {
    const row = await db
      .selectFrom('outbound_messages as o')
      .innerJoin('conversations as c', 'c.id', 'o.conversation_id')
      .innerJoin('channels as ch', 'ch.id', 'c.channel_id')
      .selectAll('o')
      .select([
        'ch.name as channel_name',
        'ch.smtp_host',
        'ch.smtp_port',
        'ch.smtp_secure',
        'ch.smtp_username',
        'ch.smtp_password_encrypted',
        'ch.smtp_auth',
        'c.channel_id',
      ])
      .where('o.id', '=', outboxId)
      .executeTakeFirst();
    if (!row) return null;
    const sent: SentMail = { outboundMessageId: row.id, messageId: row.message_id };
    const claim = await claimDelivery(db, outboxId);
    if (!claim) return null;
    if (!claim.claimed) {
      if (claim.status === 'failed') throw deliveryFailed(outboxId, claim.error ?? 'refused by the SMTP server');
      if (claim.status === 'queued') {
        throw ApplicationFailure.create({
          type: 'DeliveryInProgress',
          message: `outgoing mail ${outboxId} is being sent by another attempt`,
          // Soon after the other attempt's answer, at the latest when its lease runs out.
          nextRetryDelay: Math.min(Math.max(claim.leaseLeftMs + 500, 1_000), IN_PROGRESS_RETRY_MAX_MS),
        });
      }
      return sent; // sent or bounced
    }
    const { token } = claim;
    const server = await channelServer(row, outboxId, token);
    let message: Mail.Options;
    try {
      const composed = composeMail({
        kind: row.kind,
        messageId: row.message_id,
        from: { name: row.from_name ?? row.channel_name, address: row.from_address },
        to: row.to_address,
        subject: row.subject,
        text: row.text_body,
        inReplyTo: row.in_reply_to,
        references: row.reference_ids,
        replyTo: row.reply_to,
        signature:
          row.signature_text !== null || row.signature_html !== null
            ? { text: row.signature_text ?? '', html: row.signature_html }
            : null,
        listUnsubscribe: row.list_unsubscribe,
        cc: row.cc_addresses,
        bcc: row.bcc_addresses,
        html: row.html_body,
        attachments: await replyFilesOf(db, outboxId),
      });
      // The first attempt fixes the bytes (Date, MIME boundaries); a retry resends them, and the Sent copy appends them.
      const mime = await keepMime(outboxId, token, composed);
      message = { envelope: composed.envelope, raw: Buffer.from(mime) };
    } catch (error) {
      // A row that names anything but one mailbox is never sent, and retrying cannot change that.
      if (error instanceof InvalidRecipientError) {
        await markFailed(db, { outboxId, token, reason: error.message });
        throw deliveryFailed(outboxId, error.message);
      }
      await releaseClaim(db, { outboxId, token, reason: 'the mail could not be prepared for sending' });
      throw error;
    }
    let refused: string[];
    try {
      ({ rejected: refused } = await onSendClock(
        () => mail.send(message, server),
        () => renewClaim(db, { outboxId, token }),
      ));
    } catch (error) {
      // A host this deployment may not reach: said as it is and retried (an admin may correct the channel's settings).
      if (error instanceof DestinationRefusedError || error instanceof DestinationUnresolvedError) {
        smtpSends.inc({ kind: row.kind, outcome: 'deferred' });
        await health.failure(row.channel_id, { reason: 'destination_refused', message: error.message });
        await releaseClaim(db, { outboxId, token, reason: error.message });
        throw error;
      }
      const failure = classifySendFailure(error, [server?.password, server?.accessToken]);
      const loginRefused = isLoginRefused(error);
      const tokenRefused = Boolean(server?.accessToken) && loginRefused;
      smtpSends.inc({ kind: row.kind, outcome: failure.permanent && !tokenRefused ? 'failed' : 'deferred' });
      await health.failure(row.channel_id, {
        reason: loginRefused ? 'auth' : failure.permanent ? 'refused' : 'deferred',
        message: failure.reason,
      });
      // A refused access token is refreshed and the mail sent again; a fresh one refused too ends the grant.
      if (server?.accessToken && loginRefused) {
        await logins.refused(row.channel_id, server, 'SMTP');
        await releaseClaim(db, { outboxId, token, reason: failure.reason });
        throw ApplicationFailure.retryable(failure.reason, 'DeliveryDeferred');
      }
      if (failure.permanent) {
        await markFailed(db, { outboxId, token, reason: failure.reason });
        throw deliveryFailed(outboxId, failure.reason);
      }
      await releaseClaim(db, { outboxId, token, reason: failure.reason });
      throw ApplicationFailure.retryable(failure.reason, 'DeliveryDeferred');
    }
    smtpSends.inc({ kind: row.kind, outcome: 'sent' });
    if (server) await logins.accepted(row.channel_id, server);
    // Sent to the others: the recipients the server refused are said on the message, never dropped silently.
    await markSent(db, outboxId, refused.length > 0 ? `the mail server refused ${refused.join(', ')}; the others got it` : null);
    await health.success(row.channel_id);
    return sent;
  }

  /**
   * The channel's own SMTP server with its login (see src/mail/mailbox-login.ts); undefined: the deployment's. Mail of
   * a channel whose OAuth grant needs an admin stays queued, saying why, and is tried again every minute.
   */
  async function channelServer(
    row: Parameters<MailboxLogins['smtpServer']>[0] & { channel_id: string },
    outboxId: string,
    token: string,
  ): Promise<SmtpServer | undefined> {
    try {
      return await logins.smtpServer({ ...row, id: row.channel_id });
    } catch (error) {
      if (error instanceof ReauthorizationRequiredError) {
        const reason = `waiting for an admin to connect the mailbox again (OAuth): ${error.reason}`;
        await health.failure(row.channel_id, { reason: 'reauthorization_required', message: reason });
        await releaseClaim(db, { outboxId, token, reason });
        throw ApplicationFailure.create({ type: 'SmtpReauthorizationRequired', message: reason, nextRetryDelay: '1 minute' });
      }
      const reason = error instanceof TokenRefreshFailedError ? error.message : 'the mail could not be prepared for sending';
      await releaseClaim(db, { outboxId, token, reason });
      throw error;
    }
  }

  /**
   * Which row of the conversation's one greeting (or out-of-office note) to deliver when writing it wrote nothing: the
   * one under `outboxId` (a retry), or one still queued that an attempt cut off before its workflow task was recorded
   * wrote under another id; null when the conversation had it before.
   */
  async function rowToDeliverOf(
    trx: Transaction<Database>,
    { conversationId, outboxId, kind }: { conversationId: string; outboxId: string; kind: 'greeting' | 'out_of_office' },
  ): Promise<string | null> {
    const row = await trx
      .selectFrom('outbound_messages')
      .select(['id', 'delivery_status'])
      .where('conversation_id', '=', conversationId)
      .where('kind', '=', kind)
      .executeTakeFirstOrThrow();
    return row.id === outboxId || row.delivery_status === 'queued' ? row.id : null;
  }

  return {
    /** The channel's greeting; null when this conversation was greeted before. */
    async sendGreeting({ conversationId, outboxId }: { conversationId: string; outboxId: string }): Promise<SentMail | null> {
      const owed = await db.transaction().execute(async (trx) => {
        const conversation = await loadMailConversation(trx, conversationId);
        const written = await writeOutbox(trx, conversation, {
          outboxId,
          conversationId,
          ...greetingDraft(conversation),
        });
        return written ? outboxId : rowToDeliverOf(trx, { conversationId, outboxId, kind: 'greeting' });
      });
      return owed ? deliver(owed) : null;
    },

    /**
     * An agent's reply into the outbox (and the first response the SLA measures): quick, so the agent's
     * request is answered at once; deliverOutbox sends it, however long the mail server takes.
     */
    async writeAgentReply(input: {
      conversationId: string;
      outboxId: string;
      authorId: string;
      text: string;
      subject?: string;
      /** Held back until then (undo grace period, send later): the workflow's timer releases it. */
      scheduledFor?: string;
      /** The collision guard: refused (ReplyCollision) when someone wrote since this message. */
      lastSeenMessageId?: string;
      content?: ReplyContent;
    }): Promise<SentMail> {
      return db.transaction().execute(async (trx) => {
        const author = await trx
          .selectFrom('users')
          .select(['name', 'signature_text', 'signature_html'])
          .where('id', '=', input.authorId)
          .executeTakeFirst();
        if (!author) throw ApplicationFailure.nonRetryable(`agent ${input.authorId} does not exist`, 'AgentNotFound');
        if (input.lastSeenMessageId) await refuseCollision(trx, { ...input, lastSeenMessageId: input.lastSeenMessageId });
        const conversation = await loadMailConversation(trx, input.conversationId);
        await writeOutbox(trx, conversation, {
          ...input,
          kind: 'reply',
          senderName: author.name,
          agentSignature: { text: author.signature_text, html: author.signature_html },
          html: input.content?.html ?? null,
          ...(input.content?.to ? { to: input.content.to } : {}),
          cc: input.content?.cc ?? [],
          bcc: input.content?.bcc ?? [],
        });
        await attachReplyFiles(trx, { ...input, attachmentIds: input.content?.attachmentIds ?? [] });
        // A held reply is the first response once it goes out (releaseScheduledReply), not while it can be undone.
        if (input.scheduledFor) await holdReply(trx, { ...input, scheduledFor: input.scheduledFor });
        else await markFirstResponse(trx, input.conversationId);
        const row = await trx
          .selectFrom('outbound_messages')
          .select(['id', 'message_id'])
          .where('id', '=', input.outboxId)
          .executeTakeFirstOrThrow();
        return { outboundMessageId: row.id, messageId: row.message_id };
      });
    },

    /** Sends an outbox row written before (an agent's reply); a retry after it went out sends nothing. */
    async deliverOutbox({ outboxId }: { outboxId: string }): Promise<SentMail | null> {
      return deliver(outboxId);
    },

    /** The AI agent's answer, threaded like any reply, from the AI agent's name. */
    async sendAiReply(input: { conversationId: string; outboxId: string; aiAgentId: string; text: string }): Promise<SentMail> {
      await db.transaction().execute(async (trx) => {
        const name = await aiAgentName(trx, input.aiAgentId);
        const conversation = await loadMailConversation(trx, input.conversationId);
        await writeOutbox(trx, conversation, { ...input, kind: 'ai_reply', senderName: name });
      });
      return (await deliver(input.outboxId))!;
    },

    /** The AI agent tells the customer that a person takes over. */
    async sendHandoverNote(input: { conversationId: string; outboxId: string; aiAgentId: string }): Promise<SentMail> {
      await db.transaction().execute(async (trx) => {
        const name = await aiAgentName(trx, input.aiAgentId);
        const conversation = await loadMailConversation(trx, input.conversationId);
        await writeOutbox(trx, conversation, {
          ...input,
          ...handoverDraft(conversation, name),
        });
      });
      return (await deliver(input.outboxId))!;
    },

    /** The out-of-office note; null when this conversation had one before. */
    async sendOutOfOffice({
      stage,
      ...input
    }: {
      conversationId: string;
      outboxId: string;
      opensAtText: string;
      /** The stage the conversation waits in until business hours open, recorded with the note. */
      stage?: ConversationStage;
    }): Promise<SentMail | null> {
      // The stage holds whatever becomes of the note: the run takes the row to hold it from here.
      if (stage) await writeStage(db, input.conversationId, stage);
      const owed = await db.transaction().execute(async (trx) => {
        const conversation = await loadMailConversation(trx, input.conversationId);
        const written = await writeOutbox(trx, conversation, {
          ...input,
          ...outOfOfficeDraft(conversation, opensAtFor(conversation, input.opensAtText)),
        });
        return written ? input.outboxId : rowToDeliverOf(trx, { ...input, kind: 'out_of_office' });
      });
      return owed ? deliver(owed) : null;
    },

    /** Creates the survey with its signed, expiring link and mails it. Returns when the link expires. */
    async sendCsatSurvey(input: {
      conversationId: string;
      outboxId: string;
      surveyId: string;
      /** Whom the rating is about, for the CSAT report. */
      resolvedBy: ResolvedBy | null;
      /** Records the stage 'csat' once the survey went out (runs since the patch stage-with-its-step). */
      recordsStage?: boolean;
    }): Promise<{ expiresAt: string } | null> {
      const survey = await db.transaction().execute(async (trx) => {
        const conversation = await loadMailConversation(trx, input.conversationId);
        // A contact who unsubscribed (one click, RFC 8058) gets no survey; the timeline says why.
        if (conversation.surveys_unsubscribed_at) {
          await recordEvent(trx, input.conversationId, 'automatic_mail_suppressed', {
            kind: 'csat_survey',
            reason: 'the contact unsubscribed from surveys',
          });
          automaticMailSuppressed.inc({ kind: 'csat_survey', reason: 'unsubscribed' });
          return null;
        }
        const expiresAt = new Date(Date.now() + conversation.csat_link_validity_seconds * 1000);
        await trx
          .insertInto('csat_surveys')
          .values({
            id: input.surveyId,
            conversation_id: input.conversationId,
            channel_id: conversation.channelId,
            agent_id: input.resolvedBy?.kind === 'agent' ? input.resolvedBy.id : null,
            ai_agent_id: input.resolvedBy?.kind === 'ai_agent' ? input.resolvedBy.id : null,
            expires_at: expiresAt,
          })
          .onConflict((oc) => oc.column('id').doNothing())
          .execute();
        const survey = await trx
          .selectFrom('csat_surveys')
          .select('expires_at')
          .where('id', '=', input.surveyId)
          .executeTakeFirstOrThrow();
        const token = signCsatToken(
          { surveyId: input.surveyId, expiresAt: Math.floor(survey.expires_at.getTime() / 1000) },
          secretKey,
        );
        await writeOutbox(trx, conversation, {
          outboxId: input.outboxId,
          conversationId: input.conversationId,
          ...surveyDraft(conversation, { publicUrl, secretKey, token, expiresAt: survey.expires_at }),
        });
        await trx
          .updateTable('csat_surveys')
          .set({ outbound_message_id: input.outboxId })
          .where('id', '=', input.surveyId)
          .execute();
        return { expiresAt: survey.expires_at };
      });
      if (!survey) return null;
      await deliver(input.outboxId);
      if (input.recordsStage) await writeStage(db, input.conversationId, 'csat');
      return { expiresAt: survey.expiresAt.toISOString() };
    },
  };
}
