import { ApplicationFailure } from '@temporalio/activity';
import { sql } from 'kysely';
import type { ConversationStage, ConversationStatus, MailClassification } from '../db/schema.js';
import { chooseRoundRobin } from '../domain/assignment.js';
import { automaticMailBlock } from '../domain/loop-safety.js';
import type { Actor } from '../workflows/messages.js';
import type { ActivityDeps } from './deps.js';
import { recordEvent } from './timeline.js';

export interface ConversationContext {
  conversationId: string;
  channelId: string;
  status: ConversationStatus;
  assignee: Actor | null;
  greetingEnabled: boolean;
  greetingSent: boolean;
  csatEnabled: boolean;
  csatDelaySeconds: number;
  /** Whether any mail on the conversation came from a person (not an auto-reply or bounce). */
  heardFromPerson: boolean;
  /** Why no automatic mail may go to the contact now (loop safety), or null. */
  automaticMailBlocked: string | null;
}

export function createConversationActivities({ db }: ActivityDeps) {
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
          'ch.automatic_mail_limit_per_hour',
          (eb) =>
            eb
              .selectFrom('outbound_messages as o')
              .innerJoin('conversations as oc', 'oc.id', 'o.conversation_id')
              .select((count) => count.fn.countAll<string>().as('n'))
              .whereRef('oc.channel_id', '=', 'c.channel_id')
              .whereRef('o.to_address', '=', 'ct.email')
              .where('o.kind', 'in', ['greeting', 'csat_survey'])
              .where('o.created_at', '>', sql<Date>`now() - interval '1 hour'`)
              .as('automatic_sent_last_hour'),
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
          (eb) =>
            eb
              .exists(
                eb
                  .selectFrom('outbound_messages as o')
                  .whereRef('o.conversation_id', '=', 'c.id')
                  .where('o.kind', '=', 'greeting'),
              )
              .as('greeting_sent'),
        ])
        .where('c.id', '=', conversationId)
        .executeTakeFirst();
      if (!row) throw ApplicationFailure.nonRetryable(`conversation ${conversationId} does not exist`, 'ConversationNotFound');
      return {
        conversationId: row.id,
        channelId: row.channel_id,
        status: row.status,
        assignee: row.assignee_id ? { id: row.assignee_id, name: row.assignee_name ?? '' } : null,
        greetingEnabled: row.greeting_enabled,
        greetingSent: Boolean(row.greeting_sent),
        csatEnabled: row.csat_enabled,
        csatDelaySeconds: row.csat_delay_seconds,
        heardFromPerson: Boolean(row.heard_from_person),
        automaticMailBlocked: automaticMailBlock({
          recipient: row.contact_email,
          channelAddress: row.channel_address,
          sentLastHour: Number(row.automatic_sent_last_hour ?? 0),
          limitPerHour: row.automatic_mail_limit_per_hour,
        }),
      };
    },

    /** Puts on the timeline why a greeting or survey was not sent (loop safety). */
    async recordAutomaticMailSuppressed(input: {
      conversationId: string;
      kind: 'greeting' | 'csat_survey';
      reason: string;
    }): Promise<void> {
      await recordEvent(db, input.conversationId, 'automatic_mail_suppressed', { kind: input.kind, reason: input.reason });
    },

    /** How each newly arrived customer mail was classified, in arrival order. */
    async classifyInboundMessages({ inboundMessageIds }: { inboundMessageIds: string[] }): Promise<MailClassification[]> {
      if (inboundMessageIds.length === 0) return [];
      const rows = await db
        .selectFrom('inbound_messages')
        .select(['id', 'classification'])
        .where('id', 'in', inboundMessageIds)
        .execute();
      const byId = new Map(rows.map((row) => [row.id, row.classification ?? 'ordinary']));
      return inboundMessageIds.map((id) => byId.get(id) ?? 'ordinary');
    },

    /**
     * Round robin among the channel's available agents. The channel row is locked so that
     * concurrent assignments on one channel take turns and never pick the same "next" agent.
     */
    async assignRoundRobin({ conversationId }: { conversationId: string }): Promise<Actor | null> {
      return db.transaction().execute(async (trx) => {
        const conversation = await trx
          .selectFrom('conversations')
          .select(['channel_id', 'assignee_id'])
          .where('id', '=', conversationId)
          .executeTakeFirstOrThrow();
        await trx.selectFrom('channels').select('id').where('id', '=', conversation.channel_id).forUpdate().execute();
        const candidates = await trx
          .selectFrom('channel_agents as ca')
          .innerJoin('users as u', 'u.id', 'ca.user_id')
          .select(['u.id', 'u.name', 'u.available', 'ca.last_assigned_at', 'ca.created_at'])
          .where('ca.channel_id', '=', conversation.channel_id)
          .execute();
        const chosen = chooseRoundRobin(
          candidates.map((c) => ({
            userId: c.id,
            available: c.available,
            lastAssignedAt: c.last_assigned_at,
            joinedAt: c.created_at,
          })),
        );
        if (!chosen) {
          await setStage(trx, conversationId, 'queued');
          await recordEvent(trx, conversationId, 'queued', { reason: 'no available agent' });
          return null;
        }
        await trx
          .updateTable('channel_agents')
          .set({ last_assigned_at: sql<Date>`now()` })
          .where('channel_id', '=', conversation.channel_id)
          .where('user_id', '=', chosen.userId)
          .execute();
        await trx
          .updateTable('conversations')
          .set({ assignee_id: chosen.userId, stage: 'assigned', updated_at: sql<Date>`now()` })
          .where('id', '=', conversationId)
          .execute();
        await recordEvent(trx, conversationId, 'assigned', { assigneeId: chosen.userId, strategy: 'round_robin' });
        const name = candidates.find((c) => c.id === chosen.userId)!.name;
        return { id: chosen.userId, name };
      });
    },

    async markResolved({ conversationId, resolvedBy }: { conversationId: string; resolvedBy: string }): Promise<void> {
      await db.transaction().execute(async (trx) => {
        await trx
          .updateTable('conversations')
          .set({ status: 'resolved', stage: 'resolved', resolved_at: sql<Date>`now()`, updated_at: sql<Date>`now()` })
          .where('id', '=', conversationId)
          .execute();
        await recordEvent(trx, conversationId, 'resolved', { resolvedBy });
      });
    },

    async markReopened({ conversationId }: { conversationId: string }): Promise<void> {
      await db.transaction().execute(async (trx) => {
        const { assignee_id } = await trx
          .updateTable('conversations')
          .set({
            status: 'open',
            stage: sql`case when assignee_id is null then 'queued' else 'assigned' end`,
            resolved_at: null,
            updated_at: sql<Date>`now()`,
          })
          .where('id', '=', conversationId)
          .returning('assignee_id')
          .executeTakeFirstOrThrow();
        await recordEvent(trx, conversationId, 'reopened', { assigneeId: assignee_id });
      });
    },

    async markClosed({ conversationId }: { conversationId: string }): Promise<void> {
      await db.transaction().execute(async (trx) => {
        await trx
          .updateTable('conversations')
          .set({ status: 'closed', stage: 'closed', updated_at: sql<Date>`now()` })
          .where('id', '=', conversationId)
          .execute();
        await recordEvent(trx, conversationId, 'closed');
      });
    },

    /** Stores the customer's rating; a later submit of the same survey replaces it. */
    async recordCsatRating(input: {
      conversationId: string;
      surveyId: string;
      rating: number;
      comment: string | null;
    }): Promise<void> {
      await db.transaction().execute(async (trx) => {
        const updated = await trx
          .updateTable('csat_surveys')
          .set({ rating: input.rating, comment: input.comment, rated_at: sql<Date>`now()` })
          .where('id', '=', input.surveyId)
          .where('conversation_id', '=', input.conversationId)
          .executeTakeFirst();
        if (updated.numUpdatedRows === 0n) {
          throw ApplicationFailure.nonRetryable(
            `CSAT survey ${input.surveyId} does not belong to this conversation`,
            'SurveyNotFound',
          );
        }
        await recordEvent(trx, input.conversationId, 'csat_rated', { surveyId: input.surveyId, rating: input.rating });
      });
    },
  };
}

async function setStage(db: Parameters<typeof recordEvent>[0], conversationId: string, stage: ConversationStage) {
  await db
    .updateTable('conversations')
    .set({ stage, updated_at: sql<Date>`now()` })
    .where('id', '=', conversationId)
    .execute();
}
