import { ApplicationFailure } from '@temporalio/activity';
import { sql } from 'kysely';
import type { Db } from '../db/connection.js';
import type { ConversationStage } from '../domain/conversation.js';
import { customerMessageFacts } from '../domain/customer-intent.js';
import { forwardingAddressOf } from '../domain/forwarding-address.js';
import { automaticMailBlock, suppressionReasonCode } from '../domain/loop-safety.js';
import { automaticMailSuppressed } from '../observability/metrics.js';
import type {
  Actor,
  AutomaticMailKind,
  ConversationStatus,
  CustomerMessageFacts,
  ResolvedBy,
  SenderVerdictKind,
} from '../domain/conversation.js';
import { serveQueue } from './assignment.js';
import type { ActivityDeps } from './deps.js';
import { onceInTransaction } from './once.js';
import { recordEvent, recordEventOnce, writeStage } from './timeline.js';

export interface ConversationContext {
  conversationId: string;
  channelId: string;
  status: ConversationStatus;
  assignee: Actor | null;
  greetingEnabled: boolean;
  /**
   * The greeting (the out-of-office note) went out, or the server refused it for good. One still queued is owed: its
   * attempt was cut off (a worker died) before its workflow task was recorded, and the next send delivers it.
   */
  greetingSent: boolean;
  outOfOfficeSent: boolean;
  csatEnabled: boolean;
  csatDelaySeconds: number;
  /** Whether any mail on the conversation came from a person (not an auto-reply or bounce). */
  heardFromPerson: boolean;
  /** Why no automatic mail may go to the contact now (loop safety, floods, unverified senders), or null. */
  automaticMailBlocked: string | null;
  /** Why the conversation is spam (the first mail's verdict), while it is; null otherwise. */
  spamReason?: string | null;
  aiConfidenceThreshold: number;
  aiMaxTurns: number;
  /** Quiet period after resolution before the conversation closes. */
  closeAfterSeconds: number;
}

/**
 * Automatic mail of the conversation's channel in the last hour, for loadConversation's flood limits: to its contact
 * (greetings, surveys, out-of-office notes), to the contact's domain, and by the channel in all. The conversation's own
 * mail still queued is left out: a workflow task that runs again after its worker died (its mail written, not yet
 * sent) decides as its first run did, and sends that mail instead of counting it against itself.
 */
const AUTOMATIC_MAIL_LAST_HOUR = sql<{ toRecipient: number; toDomain: number; byChannel: number }>`(
  select json_build_object(
    'toRecipient', count(*) filter (where o.to_address = ct.email and o.kind in ('greeting', 'csat_survey', 'out_of_office')),
    'toDomain', count(*) filter (where split_part(o.to_address, '@', 2) = split_part(ct.email, '@', 2)),
    'byChannel', count(*))
  from outbound_messages o join conversations oc on oc.id = o.conversation_id
  where oc.channel_id = c.channel_id
    and o.kind in ('greeting', 'csat_survey', 'out_of_office', 'ai_reply', 'handover')
    and o.created_at > now() - interval '1 hour'
    and not (o.conversation_id = c.id and o.delivery_status = 'queued'))`;

interface LatestCustomerMail {
  verdict: SenderVerdictKind | null;
  reasons: string[] | null;
  imported: boolean;
}

export function createConversationActivities({ db, inboundDomain }: ActivityDeps) {
  return {
    /** The conversation and the channel settings its next steps depend on, read fresh at each stage. */
    async loadConversation({ conversationId }: { conversationId: string }): Promise<ConversationContext> {
      const row = await db
        .selectFrom('conversations as c')
        .innerJoin('channels as ch', 'ch.id', 'c.channel_id')
        .innerJoin('contacts as ct', 'ct.id', 'c.contact_id')
        .leftJoin('users as u', 'u.id', 'c.assignee_id')
        .select([
          'ct.email as contact_email',
          'ch.email_address as channel_address',
          'ch.forwarding_username',
          'ch.forwarding_subdomain',
          'ch.automatic_mail_limit_per_hour',
          'ch.automatic_mail_limit_per_domain_per_hour',
          'ch.automatic_mail_limit_per_channel_per_hour',
          AUTOMATIC_MAIL_LAST_HOUR.as('automatic_mail_last_hour'),
          // The customer's latest mail (from a person): whether its sender is verified, whether an import brought it.
          (eb) =>
            eb
              .selectFrom('inbound_messages as m')
              .select(
                sql<string>`json_build_object('verdict', m.sender_verdict, 'reasons', m.sender_verdict_reasons, 'imported', m.imported)`.as(
                  'latest',
                ),
              )
              .whereRef('m.conversation_id', '=', 'c.id')
              .where('m.classification', '=', 'ordinary')
              .orderBy('m.received_at', 'desc')
              .limit(1)
              .as('latest_customer_mail'),
          (eb) =>
            eb
              .exists(
                eb
                  .selectFrom('conversation_events as e')
                  .whereRef('e.conversation_id', '=', 'c.id')
                  .where('e.type', '=', 'released_from_spam'),
              )
              .as('released_from_spam'),
          (eb) =>
            eb
              .exists(
                eb
                  .selectFrom('inbound_messages as m')
                  .whereRef('m.conversation_id', '=', 'c.id')
                  .where('m.classification', '=', 'ordinary'),
              )
              .as('heard_from_person'),
          'c.id',
          'c.channel_id',
          'c.status',
          'c.assignee_id',
          'u.name as assignee_name',
          'ch.greeting_enabled',
          'ch.csat_enabled',
          'ch.csat_delay_seconds',
          'ch.ai_confidence_threshold',
          'ch.ai_max_turns',
          'ch.close_after_seconds',
          (eb) =>
            eb
              .exists(
                eb
                  .selectFrom('outbound_messages as o')
                  .whereRef('o.conversation_id', '=', 'c.id')
                  .where('o.kind', '=', 'greeting')
                  .where('o.delivery_status', '<>', 'queued'),
              )
              .as('greeting_sent'),
          (eb) =>
            eb
              .exists(
                eb
                  .selectFrom('outbound_messages as o')
                  .whereRef('o.conversation_id', '=', 'c.id')
                  .where('o.kind', '=', 'out_of_office')
                  .where('o.delivery_status', '<>', 'queued'),
              )
              .as('out_of_office_sent'),
        ])
        .where('c.id', '=', conversationId)
        .executeTakeFirst();
      if (!row) throw ApplicationFailure.nonRetryable(`conversation ${conversationId} does not exist`, 'ConversationNotFound');
      const sent = row.automatic_mail_last_hour;
      const latest = row.latest_customer_mail as unknown as LatestCustomerMail | null;
      const latestMail = latest && {
        senderVerdict: latest.verdict,
        senderReasons: latest.reasons ?? [],
        imported: latest.imported,
      };
      return {
        conversationId: row.id,
        channelId: row.channel_id,
        status: row.status,
        assignee: row.assignee_id ? { id: row.assignee_id, name: row.assignee_name ?? '' } : null,
        greetingEnabled: row.greeting_enabled,
        greetingSent: Boolean(row.greeting_sent),
        outOfOfficeSent: Boolean(row.out_of_office_sent),
        csatEnabled: row.csat_enabled,
        csatDelaySeconds: row.csat_delay_seconds,
        heardFromPerson: Boolean(row.heard_from_person),
        automaticMailBlocked: automaticMailBlock({
          recipient: row.contact_email,
          channelAddress: row.channel_address,
          forwardingAddress: inboundDomain ? forwardingAddressOf(row, inboundDomain) : null,
          sentLastHour: sent.toRecipient,
          limitPerHour: row.automatic_mail_limit_per_hour,
          sentToDomainLastHour: sent.toDomain,
          limitPerDomainPerHour: row.automatic_mail_limit_per_domain_per_hour,
          sentByChannelLastHour: sent.byChannel,
          limitPerChannelPerHour: row.automatic_mail_limit_per_channel_per_hour,
          latestMail,
          releasedFromSpam: Boolean(row.released_from_spam),
        }),
        spamReason: row.status === 'spam' ? (latestMail?.senderReasons[0] ?? 'the receiving server flagged it') : null,
        aiConfidenceThreshold: row.ai_confidence_threshold,
        aiMaxTurns: row.ai_max_turns,
        closeAfterSeconds: row.close_after_seconds,
      };
    },

    /** Puts on the timeline why a greeting or survey was not sent (loop safety). */
    async recordAutomaticMailSuppressed(input: {
      conversationId: string;
      kind: AutomaticMailKind;
      reason: string;
      /** The stage the conversation waits in while no note goes out, recorded first (outside business hours). */
      stage?: ConversationStage;
    }): Promise<void> {
      if (input.stage) await writeStage(db, input.conversationId, input.stage);
      await recordEventOnce(db, input.conversationId, 'automatic_mail_suppressed', { kind: input.kind, reason: input.reason });
      automaticMailSuppressed.inc({ kind: input.kind, reason: suppressionReasonCode(input.reason) });
    },

    /** Hands over from the AI agent to people: on the timeline with the reason. */
    async recordEscalation(input: { conversationId: string; aiAgentId: string; reason: string }): Promise<void> {
      await recordEventOnce(db, input.conversationId, 'escalated', { aiAgentId: input.aiAgentId, reason: input.reason });
    },

    /** What each newly arrived customer mail is and says, in arrival order (for signals that came without it). */
    async readCustomerMessages(input: { conversationId: string; inboundMessageIds: string[] }): Promise<CustomerMessageFacts[]> {
      if (input.inboundMessageIds.length === 0) return [];
      const channel = await db
        .selectFrom('conversations as c')
        .innerJoin('channels as ch', 'ch.id', 'c.channel_id')
        .select('ch.languages')
        .where('c.id', '=', input.conversationId)
        .executeTakeFirst();
      const languages = channel?.languages ?? [];
      const rows = await db
        .selectFrom('inbound_messages')
        .select(['id', 'classification', 'reply_text', 'text_body', 'sender_verdict'])
        .where('id', 'in', input.inboundMessageIds)
        .execute();
      const byId = new Map(rows.map((row) => [row.id, row]));
      return input.inboundMessageIds.map((id) => {
        const row = byId.get(id);
        const facts = customerMessageFacts(
          {
            classification: row?.classification ?? 'ordinary',
            senderVerdict: row?.sender_verdict ?? 'ordinary',
            text: row?.reply_text ?? row?.text_body ?? '',
          },
          languages,
        );
        return { inboundMessageId: id, ...facts };
      });
    },

    /** The stage the conversation's workflow moved to, with the status it belongs to: the workflow is its only writer. */
    async recordStage({ conversationId, stage }: { conversationId: string; stage: ConversationStage }): Promise<void> {
      await writeStage(db, conversationId, stage);
    },

    /** Resolves it; the assignee's freed capacity goes to the channel's queue at once. */
    async markResolved({
      conversationId,
      resolvedBy,
      recordsStage,
    }: {
      conversationId: string;
      resolvedBy: ResolvedBy;
      /** Records the stage 'resolved' too (runs since the patch stage-with-its-step): no recordStage of its own. */
      recordsStage?: boolean;
    }): Promise<{ othersAssigned: string[] }> {
      return onceInTransaction(db, async (trx) => {
        const { channel_id } = await trx
          .selectFrom('conversations')
          .select('channel_id')
          .where('id', '=', conversationId)
          .executeTakeFirstOrThrow();
        // The queue is served under the channel lock; take it before the conversation row.
        await trx.selectFrom('channels').select('id').where('id', '=', channel_id).forUpdate().execute();
        await trx
          .updateTable('conversations')
          .set({
            status: 'resolved',
            queued_at: null,
            resolved_at: sql<Date>`now()`,
            updated_at: sql<Date>`now()`,
          })
          .where('id', '=', conversationId)
          .execute();
        await recordEvent(trx, conversationId, 'resolved', { resolvedBy: resolvedBy.id, resolvedByKind: resolvedBy.kind });
        if (recordsStage) await writeStage(trx, conversationId, 'resolved');
        const assigned = await serveQueue(trx, channel_id);
        return { othersAssigned: assigned.map((a) => a.conversationId) };
      });
    },

    /** Open again; `reopenedBy` is the agent who reopened it, absent when the customer wrote. */
    async markReopened({ conversationId, reopenedBy }: { conversationId: string; reopenedBy?: Actor }): Promise<void> {
      await onceInTransaction(db, async (trx) => {
        const { assignee_id } = await trx
          .updateTable('conversations')
          .set({
            status: 'open',
            resolved_at: null,
            closed_at: null,
            updated_at: sql<Date>`now()`,
          })
          .where('id', '=', conversationId)
          .returning('assignee_id')
          .executeTakeFirstOrThrow();
        await recordEvent(trx, conversationId, 'reopened', {
          assigneeId: assignee_id,
          ...(reopenedBy ? { reopenedBy: reopenedBy.id } : {}),
        });
      });
    },

    /** Closes it; with the survey that went out, says how the customer rated it so far (for the run's last words). */
    async markClosed({
      conversationId,
      surveyId,
      recordsStage,
    }: {
      conversationId: string;
      surveyId?: string;
      /** Records the stage 'closed' too (runs since the patch stage-with-its-step): no recordStage of its own. */
      recordsStage?: boolean;
    }): Promise<ClosedConversation> {
      return onceInTransaction(db, async (trx) => {
        const closed = await trx
          .updateTable('conversations')
          .set({ status: 'closed', closed_at: sql<Date>`now()`, updated_at: sql<Date>`now()` })
          .where('id', '=', conversationId)
          .returning((eb) =>
            eb
              .selectFrom('csat_surveys')
              .select('rating')
              .where('id', '=', surveyId ?? null)
              .as('csatRating'),
          )
          .executeTakeFirst();
        await recordEvent(trx, conversationId, 'closed');
        if (recordsStage) await writeStage(trx, conversationId, 'closed');
        return { csatRating: closed?.csatRating ?? null };
      });
    },

    /** Stores a rating signalled to the conversation, as an API did before it stored ratings itself. */
    async recordCsatRating(input: CsatRating): Promise<void> {
      if (!(await recordCsatRating(db, input))) {
        throw ApplicationFailure.nonRetryable(
          `CSAT survey ${input.surveyId} does not belong to this conversation`,
          'SurveyNotFound',
        );
      }
    },
  };
}

export interface ClosedConversation {
  /** The rating of the survey markClosed was given, if the customer rated it. */
  csatRating: number | null;
}

export interface CsatRating {
  conversationId: string;
  surveyId: string;
  rating: number;
  comment: string | null;
}

/**
 * Stores the customer's rating of a survey, and its timeline event; a later submit of the same survey replaces it.
 * False when the survey is not this conversation's. Ratings change nothing in the conversation's course, so the API
 * stores them itself: the conversation's run need not wake up, or wait after it closed while the link is valid.
 */
export async function recordCsatRating(db: Db, input: CsatRating): Promise<boolean> {
  return onceInTransaction(db, async (trx) => {
    const updated = await trx
      .updateTable('csat_surveys')
      .set({ rating: input.rating, comment: input.comment, rated_at: sql<Date>`now()` })
      .where('id', '=', input.surveyId)
      .where('conversation_id', '=', input.conversationId)
      .executeTakeFirst();
    if (updated.numUpdatedRows === 0n) return false;
    await recordEvent(trx, input.conversationId, 'csat_rated', { surveyId: input.surveyId, rating: input.rating });
    return true;
  });
}
