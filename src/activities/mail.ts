import { ApplicationFailure } from '@temporalio/activity';
import { sql, type Transaction } from 'kysely';
import type { Database, OutboundKind } from '../db/schema.js';
import { signCsatToken } from '../domain/csat-token.js';
import { csatSurveyText, greetingText, handoverText, outOfOfficeText } from '../domain/templates.js';
import {
  outboundMessageId,
  outboundThreadHeaders,
  replySubject,
  replyTokenAddress,
  type ThreadMessage,
} from '../domain/threading.js';
import { composeMail } from '../mail/compose.js';
import type { ResolvedBy } from './conversation.js';
import type { ActivityDeps } from './deps.js';
import { recordEvent, type TimelineEventType } from './timeline.js';

export interface SentMail {
  outboundMessageId: string;
  messageId: string;
}

const SENT_EVENT: Record<OutboundKind, TimelineEventType> = {
  greeting: 'greeting_sent',
  reply: 'agent_reply_sent',
  csat_survey: 'csat_survey_sent',
  out_of_office: 'out_of_office_sent',
  ai_reply: 'ai_reply_sent',
  handover: 'handover_sent',
};

/**
 * Outbound mail goes through the outbox: the workflow picks the row id, the activity writes the row
 * once and sends it. A retry finds the row and resends with the same Message-ID, never a second mail.
 */
type MailConversation = Awaited<ReturnType<typeof loadMailConversation>>;

async function loadMailConversation(trx: Transaction<Database>, conversationId: string) {
  const row = await trx
    .selectFrom('conversations as c')
    .innerJoin('channels as ch', 'ch.id', 'c.channel_id')
    .innerJoin('contacts as ct', 'ct.id', 'c.contact_id')
    .select([
      'c.id',
      'c.channel_id as channelId',
      'c.subject',
      'ch.name as channelName',
      'ch.email_address as channelAddress',
      'ch.greeting_text',
      'ch.out_of_office_text',
      'ch.csat_link_validity_seconds',
      'c.reply_token',
      'ct.email as contactEmail',
    ])
    .where('c.id', '=', conversationId)
    .executeTakeFirst();
  if (!row) throw ApplicationFailure.nonRetryable(`conversation ${conversationId} does not exist`, 'ConversationNotFound');
  const { contactEmail } = row;
  // A3: the API refuses to mail a contact without an address; this is the last line.
  if (!contactEmail)
    throw ApplicationFailure.nonRetryable(`the contact of ${conversationId} has no email address yet`, 'NoAddress');
  return { ...row, contactEmail };
}

async function aiAgentName(trx: Transaction<Database>, aiAgentId: string): Promise<string> {
  const row = await trx.selectFrom('ai_agents').select('name').where('id', '=', aiAgentId).executeTakeFirst();
  if (!row) throw ApplicationFailure.nonRetryable(`AI agent ${aiAgentId} does not exist`, 'AiAgentNotFound');
  return row.name;
}

export function createMailActivities({ db, mail, publicUrl, secretKey }: ActivityDeps) {
  /** Every Message-ID of the conversation, oldest first: what the next mail's References are built from. */
  async function threadOf(trx: Transaction<Database>, conversationId: string): Promise<ThreadMessage[]> {
    const rows = await sql<{ message_id: string; direction: ThreadMessage['direction'] }>`
      select message_id, direction from (
        select message_id, 'inbound' as direction, received_at as at from inbound_messages where conversation_id = ${conversationId}
        union all
        select message_id, 'outbound' as direction, created_at as at from outbound_messages where conversation_id = ${conversationId}
      ) thread order by at`.execute(trx);
    return rows.rows.map((row) => ({ messageId: row.message_id, direction: row.direction }));
  }

  async function writeOutbox(
    trx: Transaction<Database>,
    conversation: MailConversation,
    input: {
      outboxId: string;
      conversationId: string;
      kind: OutboundKind;
      authorId?: string;
      aiAgentId?: string;
      subject?: string;
      text: string;
    },
  ): Promise<void> {
    const thread = await threadOf(trx, input.conversationId);
    const { inReplyTo, references } = outboundThreadHeaders(thread);
    await trx
      .insertInto('outbound_messages')
      .values({
        id: input.outboxId,
        conversation_id: input.conversationId,
        kind: input.kind,
        message_id: outboundMessageId(input.outboxId, conversation.channelAddress),
        author_id: input.authorId ?? null,
        ai_agent_id: input.aiAgentId ?? null,
        from_address: conversation.channelAddress,
        to_address: conversation.contactEmail,
        subject: input.subject?.trim() || replySubject(conversation.subject),
        text_body: input.text,
        in_reply_to: inReplyTo ?? null,
        reference_ids: JSON.stringify(references),
        reply_to: replyTokenAddress(conversation.channelAddress, conversation.reply_token),
      })
      // A retry, or a second greeting for the same conversation, writes nothing.
      .onConflict((oc) => oc.doNothing())
      .execute();
  }

  /** Sends the outbox row unless it went out already; records it on the timeline once. */
  async function deliver(outboxId: string, fromName: string): Promise<SentMail | null> {
    const row = await db.selectFrom('outbound_messages').selectAll().where('id', '=', outboxId).executeTakeFirst();
    if (!row) return null;
    if (!row.sent_at) {
      await mail.send(
        composeMail({
          kind: row.kind,
          messageId: row.message_id,
          from: { name: fromName, address: row.from_address },
          to: row.to_address,
          subject: row.subject,
          text: row.text_body,
          inReplyTo: row.in_reply_to,
          references: row.reference_ids,
          replyTo: row.reply_to,
        }),
      );
      await db.transaction().execute(async (trx) => {
        const marked = await trx
          .updateTable('outbound_messages')
          .set({ sent_at: sql<Date>`now()` })
          .where('id', '=', outboxId)
          .where('sent_at', 'is', null)
          .executeTakeFirst();
        if (marked.numUpdatedRows > 0n) {
          await recordEvent(trx, row.conversation_id, SENT_EVENT[row.kind], {
            outboundMessageId: row.id,
            authorId: row.author_id,
            aiAgentId: row.ai_agent_id,
          });
        }
      });
    }
    return { outboundMessageId: row.id, messageId: row.message_id };
  }

  return {
    /** The channel's greeting; null when this conversation was greeted before. */
    async sendGreeting({ conversationId, outboxId }: { conversationId: string; outboxId: string }): Promise<SentMail | null> {
      const conversation = await db.transaction().execute(async (trx) => {
        const conversation = await loadMailConversation(trx, conversationId);
        await writeOutbox(trx, conversation, {
          outboxId,
          conversationId,
          kind: 'greeting',
          text: greetingText(conversation.greeting_text),
        });
        return conversation;
      });
      return deliver(outboxId, conversation.channelName);
    },

    async sendAgentReply(input: {
      conversationId: string;
      outboxId: string;
      authorId: string;
      text: string;
      subject?: string;
    }): Promise<SentMail> {
      const { conversation, authorName } = await db.transaction().execute(async (trx) => {
        const author = await trx.selectFrom('users').select('name').where('id', '=', input.authorId).executeTakeFirst();
        if (!author) throw ApplicationFailure.nonRetryable(`agent ${input.authorId} does not exist`, 'AgentNotFound');
        const conversation = await loadMailConversation(trx, input.conversationId);
        await writeOutbox(trx, conversation, { ...input, kind: 'reply' });
        // What the first-response SLA measures.
        await trx
          .updateTable('conversations')
          .set({ first_response_at: sql<Date>`coalesce(first_response_at, now())` })
          .where('id', '=', input.conversationId)
          .execute();
        return { conversation, authorName: author.name };
      });
      const sent = await deliver(input.outboxId, `${authorName} (${conversation.channelName})`);
      return sent!;
    },

    /** The AI agent's answer, threaded like any reply, from the AI agent's name. */
    async sendAiReply(input: { conversationId: string; outboxId: string; aiAgentId: string; text: string }): Promise<SentMail> {
      const { conversation, name } = await db.transaction().execute(async (trx) => {
        const name = await aiAgentName(trx, input.aiAgentId);
        const conversation = await loadMailConversation(trx, input.conversationId);
        await writeOutbox(trx, conversation, { ...input, kind: 'ai_reply' });
        return { conversation, name };
      });
      return (await deliver(input.outboxId, `${name} (${conversation.channelName})`))!;
    },

    /** The AI agent tells the customer that a person takes over. */
    async sendHandoverNote(input: { conversationId: string; outboxId: string; aiAgentId: string }): Promise<SentMail> {
      const { conversation, name } = await db.transaction().execute(async (trx) => {
        const name = await aiAgentName(trx, input.aiAgentId);
        const conversation = await loadMailConversation(trx, input.conversationId);
        await writeOutbox(trx, conversation, { ...input, kind: 'handover', text: handoverText(conversation.channelName) });
        return { conversation, name };
      });
      return (await deliver(input.outboxId, `${name} (${conversation.channelName})`))!;
    },

    /** The out-of-office note; null when this conversation had one before. */
    async sendOutOfOffice(input: { conversationId: string; outboxId: string; opensAtText: string }): Promise<SentMail | null> {
      const conversation = await db.transaction().execute(async (trx) => {
        const conversation = await loadMailConversation(trx, input.conversationId);
        await writeOutbox(trx, conversation, {
          ...input,
          kind: 'out_of_office',
          text: outOfOfficeText(conversation.out_of_office_text, input.opensAtText),
        });
        return conversation;
      });
      return deliver(input.outboxId, conversation.channelName);
    },

    /** Creates the survey with its signed, expiring link and mails it. Returns when the link expires. */
    async sendCsatSurvey(input: {
      conversationId: string;
      outboxId: string;
      surveyId: string;
      /** Whom the rating is about, for the CSAT report. */
      resolvedBy: ResolvedBy | null;
    }): Promise<{ expiresAt: string }> {
      const { conversation, expiresAt } = await db.transaction().execute(async (trx) => {
        const conversation = await loadMailConversation(trx, input.conversationId);
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
        const text = csatSurveyText({
          channelName: conversation.channelName,
          surveyUrl: `${publicUrl}/csat/${token}`,
          validUntil: survey.expires_at,
        });
        await writeOutbox(trx, conversation, {
          outboxId: input.outboxId,
          conversationId: input.conversationId,
          kind: 'csat_survey',
          subject: `How did we do? ${replySubject(conversation.subject)}`,
          text,
        });
        await trx
          .updateTable('csat_surveys')
          .set({ outbound_message_id: input.outboxId })
          .where('id', '=', input.surveyId)
          .execute();
        return { conversation, expiresAt: survey.expires_at };
      });
      await deliver(input.outboxId, conversation.channelName);
      return { expiresAt: expiresAt.toISOString() };
    },
  };
}
