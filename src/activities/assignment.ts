import { ApplicationFailure } from '@temporalio/activity';
import { type Kysely, sql, type Transaction } from 'kysely';
import { selectChannelAgents } from '../db/channel-agents.js';
import type { Database } from '../db/schema.js';
import { chooseAgent, planAssignments, type AssignmentCandidate, type AssignmentStrategy } from '../domain/assignment.js';
import { openStageOf, type Actor } from '../domain/conversation.js';
import type { ActivityDeps } from './deps.js';
import { onceInTransaction } from './once.js';
import { recordEvent, writeStage } from './timeline.js';

// Every change of who has which conversation on a channel happens with the channel row locked:
// concurrent assignments take turns, so no agent goes over capacity and no free slot is missed.

// Conversations one pass of the queue looks at; the rest wait for the next change in capacity.
const QUEUE_PASS_LIMIT = 1000;

export interface QueueResult {
  /** The conversation the caller asked about: who has it now, or null when it waits in the queue. */
  assignee: Actor | null;
  /** Other queued conversations this pass gave an agent to: their workflows must be told. */
  othersAssigned: string[];
}

interface LockedChannel {
  id: string;
  strategy: AssignmentStrategy;
}

export function createAssignmentActivities({ db }: ActivityDeps) {
  return {
    /**
     * Puts the conversation (if any) into the channel's queue, then serves the queue in order
     * (priority, then waiting time) by the channel's strategy while agents have free capacity.
     */
    async assignFromQueue(input: {
      conversationId?: string;
      channelId?: string;
      excludeUserIds?: string[];
      /** Records the conversation's stage it leads to, assigned or queued (runs since the patch stage-with-its-step). */
      recordsStage?: boolean;
    }): Promise<QueueResult> {
      return onceInTransaction(db, async (trx) => {
        const channelId = input.channelId ?? (await channelOf(trx, input.conversationId!));
        await lockChannel(trx, channelId);
        if (input.conversationId) {
          await trx
            .updateTable('conversations')
            .set({
              assignee_id: null,
              queued_at: sql<Date>`coalesce(queued_at, now())`,
              updated_at: sql<Date>`now()`,
            })
            .where('id', '=', input.conversationId)
            .where('status', '=', 'open')
            .execute();
        }
        const assigned = await serveQueue(trx, channelId, {
          conversationId: input.conversationId,
          excludeUserIds: input.excludeUserIds ?? [],
        });
        const own = assigned.find((a) => a.conversationId === input.conversationId);
        if (input.conversationId && !own)
          await recordEvent(trx, input.conversationId, 'queued', { reason: 'no agent has free capacity' });
        const assignee = own ? own.assignee : null;
        if (input.conversationId && input.recordsStage) await writeStage(trx, input.conversationId, openStageOf(assignee));
        return {
          assignee,
          othersAssigned: assigned.filter((a) => a.conversationId !== input.conversationId).map((a) => a.conversationId),
        };
      });
    },

    /** Assigns by hand (an agent, an admin, a routing rule, an agent taking over from the AI agent): capacity does not apply. */
    async assignManually(input: { conversationId: string; assigneeId: string; byId: string }): Promise<Actor> {
      return onceInTransaction(db, async (trx) => {
        const channelId = await channelOf(trx, input.conversationId);
        await lockChannel(trx, channelId);
        const agent = await trx
          .selectFrom('channel_agents as ca')
          .innerJoin('users as u', 'u.id', 'ca.user_id')
          .select(['u.id', 'u.name'])
          .where('ca.channel_id', '=', channelId)
          .where('ca.user_id', '=', input.assigneeId)
          .executeTakeFirst();
        if (!agent) {
          throw ApplicationFailure.nonRetryable(`user ${input.assigneeId} is not an agent of this channel`, 'NotAChannelAgent');
        }
        await giveTo(trx, channelId, input.conversationId, agent.id);
        await recordEvent(trx, input.conversationId, 'assigned', { assigneeId: agent.id, by: input.byId, strategy: 'manual' });
        return { id: agent.id, name: agent.name };
      });
    },

    async unassign(input: { conversationId: string; byId: string }): Promise<void> {
      await onceInTransaction(db, async (trx) => {
        await lockChannel(trx, await channelOf(trx, input.conversationId));
        const previous = await trx
          .selectFrom('conversations')
          .select('assignee_id')
          .where('id', '=', input.conversationId)
          .executeTakeFirstOrThrow();
        await trx
          .updateTable('conversations')
          .set({ assignee_id: null, updated_at: sql<Date>`now()` })
          .where('id', '=', input.conversationId)
          .execute();
        await recordEvent(trx, input.conversationId, 'unassigned', { previousAssigneeId: previous.assignee_id, by: input.byId });
      });
    },

    /**
     * SLA breached: hands the conversation to the next available agent with free capacity other than
     * the current one; stays where it is when there is nobody (its raised priority puts it first in the queue).
     */
    async offerToNextAgent({ conversationId }: { conversationId: string }): Promise<{ assignee: Actor | null }> {
      return onceInTransaction(db, async (trx) => {
        const channelId = await channelOf(trx, conversationId);
        const channel = await lockChannel(trx, channelId);
        const conversation = await trx
          .selectFrom('conversations as c')
          .leftJoin('users as u', 'u.id', 'c.assignee_id')
          .select(['c.assignee_id', 'u.name as assignee_name', 'c.team_id', 'c.status'])
          .where('c.id', '=', conversationId)
          .executeTakeFirstOrThrow();
        const current = conversation.assignee_id
          ? { id: conversation.assignee_id, name: conversation.assignee_name ?? '' }
          : null;
        if (conversation.status !== 'open') return { assignee: current };
        const candidates = await loadCandidates(trx, channelId, conversation.team_id);
        const next = chooseAgent(channel.strategy, candidates, { exclude: current ? [current.id] : [] });
        if (!next) return { assignee: current };
        await giveTo(trx, channelId, conversationId, next.userId);
        await recordEvent(trx, conversationId, 'assigned', {
          assigneeId: next.userId,
          previousAssigneeId: current?.id ?? null,
          strategy: 'sla_breach',
        });
        return { assignee: { id: next.userId, name: candidates.find((c) => c.userId === next.userId)!.name } };
      });
    },

    /**
     * An agent left the channel or became unavailable: their open conversations on it go back to the
     * queue (ahead of newer ones). Nothing happens when they are, by now, available members again.
     */
    async takeBackConversations({ channelId, userId }: { channelId: string; userId: string }): Promise<string[]> {
      return onceInTransaction(db, async (trx) => {
        await lockChannel(trx, channelId);
        const stillServing = await trx
          .selectFrom('channel_agents as ca')
          .innerJoin('users as u', 'u.id', 'ca.user_id')
          .select('u.id')
          .where('ca.channel_id', '=', channelId)
          .where('ca.user_id', '=', userId)
          .where('u.available', '=', true)
          .executeTakeFirst();
        if (stillServing) return [];
        const taken = await trx
          .updateTable('conversations')
          .set({ assignee_id: null, queued_at: sql<Date>`created_at`, updated_at: sql<Date>`now()` })
          .where('channel_id', '=', channelId)
          .where('assignee_id', '=', userId)
          .where('status', '=', 'open')
          .returning('id')
          .execute();
        for (const { id } of taken)
          await recordEvent(trx, id, 'unassigned', { previousAssigneeId: userId, reason: 'agent left' });
        return taken.map(({ id }) => id);
      });
    },
  };
}

/** Serves the queue of a locked channel; returns what it assigned, in queue order. */
export async function serveQueue(
  trx: Transaction<Database>,
  channelId: string,
  options: { conversationId?: string; excludeUserIds?: string[] } = {},
): Promise<Array<{ conversationId: string; assignee: Actor }>> {
  const channel = await trx
    .selectFrom('channels')
    .select(['assignment_strategy'])
    .where('id', '=', channelId)
    .executeTakeFirstOrThrow();
  const queue = await trx
    .selectFrom('conversations')
    .select(['id', 'team_id'])
    .where('channel_id', '=', channelId)
    .where('status', '=', 'open')
    .where('assignee_id', 'is', null)
    .where('queued_at', 'is not', null)
    .orderBy(sql`case priority when 'urgent' then 0 when 'high' then 1 when 'normal' then 2 else 3 end`)
    .orderBy('queued_at')
    .orderBy('id')
    .limit(QUEUE_PASS_LIMIT)
    .execute();
  if (queue.length === 0) return [];
  const candidates = await loadCandidates(trx, channelId, null);
  const teams = await teamMembers(
    trx,
    queue.map((item) => item.team_id).filter((id): id is string => id !== null),
  );
  const everyone = candidates.map((c) => c.userId);
  const plan = planAssignments(
    channel.assignment_strategy,
    queue.map((item) => {
      let eligible: string[] | null = item.team_id ? (teams.get(item.team_id) ?? []) : null;
      if (item.id === options.conversationId && options.excludeUserIds?.length) {
        eligible = (eligible ?? everyone).filter((id) => !options.excludeUserIds!.includes(id));
      }
      return { conversationId: item.id, eligibleUserIds: eligible };
    }),
    candidates,
    new Date(),
  );
  const names = new Map(candidates.map((c) => [c.userId, c.name]));
  const assigned: Array<{ conversationId: string; assignee: Actor }> = [];
  for (const { item, userId } of plan) {
    await giveTo(trx, channelId, item.conversationId, userId);
    await recordEvent(trx, item.conversationId, 'assigned', { assigneeId: userId, strategy: channel.assignment_strategy });
    assigned.push({ conversationId: item.conversationId, assignee: { id: userId, name: names.get(userId) ?? '' } });
  }
  return assigned;
}

async function channelOf(trx: Kysely<Database>, conversationId: string): Promise<string> {
  const row = await trx.selectFrom('conversations').select('channel_id').where('id', '=', conversationId).executeTakeFirst();
  if (!row) throw ApplicationFailure.nonRetryable(`conversation ${conversationId} does not exist`, 'ConversationNotFound');
  return row.channel_id;
}

async function lockChannel(trx: Transaction<Database>, channelId: string): Promise<LockedChannel> {
  const row = await trx
    .selectFrom('channels')
    .select(['id', 'assignment_strategy'])
    .where('id', '=', channelId)
    .forUpdate()
    .executeTakeFirstOrThrow();
  return { id: row.id, strategy: row.assignment_strategy };
}

/** The channel's agents with what assignment needs to know: availability, capacity and current load. */
async function loadCandidates(
  trx: Transaction<Database>,
  channelId: string,
  teamId: string | null,
): Promise<Array<AssignmentCandidate & { name: string }>> {
  let query = selectChannelAgents(trx, channelId);
  if (teamId) {
    query = query.where('u.id', 'in', (eb) => eb.selectFrom('team_members').select('user_id').where('team_id', '=', teamId));
  }
  const rows = await query.execute();
  return rows.map((row) => ({
    userId: row.id,
    name: row.name,
    available: row.available,
    lastAssignedAt: row.last_assigned_at,
    joinedOrder: Number(row.joined_order),
    capacity: row.effective_capacity,
    openConversations: Number(row.open_conversations ?? 0),
  }));
}

async function teamMembers(trx: Transaction<Database>, teamIds: string[]): Promise<Map<string, string[]>> {
  const members = new Map<string, string[]>();
  if (teamIds.length === 0) return members;
  const rows = await trx
    .selectFrom('team_members')
    .select(['team_id', 'user_id'])
    .where('team_id', 'in', [...new Set(teamIds)])
    .execute();
  for (const row of rows) members.set(row.team_id, [...(members.get(row.team_id) ?? []), row.user_id]);
  return members;
}

/**
 * Gives the conversation to the agent. Their last assignment is stamped strictly after every earlier one on the
 * channel, in the order of the lock: not now(), the transaction's start, which an earlier-started transaction that
 * waited longer for the lock would stamp before the assignments made meanwhile, and round robin would pick its agent again.
 */
async function giveTo(trx: Transaction<Database>, channelId: string, conversationId: string, userId: string) {
  await trx
    .updateTable('conversations')
    .set({ assignee_id: userId, queued_at: null, updated_at: sql<Date>`now()` })
    .where('id', '=', conversationId)
    .execute();
  await trx
    .updateTable('channel_agents')
    .set({
      last_assigned_at: sql<Date>`greatest(clock_timestamp(), (
        select max(last_assigned_at) + interval '1 millisecond' from channel_agents where channel_id = ${channelId}))`,
    })
    .where('channel_id', '=', channelId)
    .where('user_id', '=', userId)
    .execute();
}
