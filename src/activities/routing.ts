import { ApplicationFailure } from '@temporalio/activity';
import { sql, type Kysely } from 'kysely';
import { jsonArrayFrom, jsonObjectFrom } from 'kysely/helpers/postgres';
import type { Database } from '../db/schema.js';
import { addBusinessTime, describeInstant, isOpenAt, nextOpening, type BusinessHours } from '../domain/business-hours.js';
import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  describeRule,
  raisePriority,
  ruleMatches,
  type Priority,
  type RoutingFacts,
  type RoutingRuleDefinition,
} from '../domain/routing-rules.js';
import type { Actor } from '../domain/conversation.js';
import type { ActivityDeps } from './deps.js';
import { createConversationActivities, type ConversationContext } from './conversation.js';
import { keptRead } from './once.js';
import { slaBreaches } from '../observability/metrics.js';
import { changeConversationOnce, recordEvent } from './timeline.js';

/** Who takes the conversation after triage. */
export type RouteHandler =
  { kind: 'ai'; aiAgent: Actor; answersOutsideBusinessHours: boolean } | { kind: 'agent'; agent: Actor } | { kind: 'humans' };

export interface RoutingDecision {
  /** The rule that decided, or null when none matched and the channel's defaults apply. */
  rule: string | null;
  handler: RouteHandler;
  priority: Priority;
  insideBusinessHours: boolean;
}

export interface BusinessHoursCheck {
  open: boolean;
  /** When closed: the next opening (ISO) and how people read it, e.g. "Mon 23 Nov 09:00 Europe/Berlin". */
  opensAt: string | null;
  opensAtText: string | null;
}

/** The channel's business hours when the switch is on, else null (always open). */
async function channelHours(db: Kysely<Database>, conversationId: string): Promise<BusinessHours | null> {
  const row = await db
    .selectFrom('conversations as c')
    .innerJoin('channels as ch', 'ch.id', 'c.channel_id')
    .select(['ch.business_hours_enabled', 'ch.business_hours'])
    .where('c.id', '=', conversationId)
    .executeTakeFirst();
  if (!row) throw ApplicationFailure.nonRetryable(`conversation ${conversationId} does not exist`, 'ConversationNotFound');
  return row.business_hours_enabled ? row.business_hours : null;
}

/** Open now (always, without business hours), or when they open next. */
function businessHoursCheck(hours: BusinessHours | null): BusinessHoursCheck {
  const now = new Date();
  const opensAt = hours ? nextOpening(hours, now) : now;
  if (!hours || !opensAt || opensAt.getTime() <= now.getTime()) return { open: true, opensAt: null, opensAtText: null };
  return { open: false, opensAt: opensAt.toISOString(), opensAtText: describeInstant(hours, opensAt) };
}

/**
 * firstMatchingRule, one rule per turn of the event loop: a channel's rules (admins' patterns on
 * senders' text) never hold the worker's thread for longer than one rule takes. Outside any transaction.
 */
async function firstMatchingRuleInTurns<R extends RoutingRuleDefinition>(
  rules: readonly R[],
  facts: RoutingFacts,
): Promise<R | null> {
  for (const rule of rules) {
    if (ruleMatches(rule, facts)) return rule;
    await nextTurn();
  }
  return null;
}

/**
 * What triage reads of a new conversation, in one round trip: the conversation with its channel (routing, SLA and
 * business hours settings) and contact, its first mail, the channel's first enabled AI agent, and its routing rules in
 * order.
 */
function readRoutingView(db: Kysely<Database>, conversationId: string) {
  return db
    .selectFrom('conversations as c')
    .innerJoin('channels as ch', 'ch.id', 'c.channel_id')
    .innerJoin('contacts as ct', 'ct.id', 'c.contact_id')
    .select((eb) => [
      'c.channel_id',
      'c.subject',
      'c.priority',
      'c.labels',
      'ct.email',
      'ct.attributes',
      'c.sla_due_at',
      'c.first_response_at',
      'ch.sla_first_response_seconds',
      'ch.business_hours_enabled',
      'ch.business_hours',
      'ch.ai_outside_business_hours',
      jsonObjectFrom(
        eb
          .selectFrom('inbound_messages as m')
          .select([
            'm.from_address',
            'm.to_addresses',
            'm.cc_addresses',
            'm.subject',
            'm.reply_text',
            'm.text_body',
            'm.classification',
            'm.sender_verdict',
          ])
          .whereRef('m.conversation_id', '=', 'c.id')
          .orderBy('m.received_at')
          .limit(1),
      ).as('first_mail'),
      // The channel's default AI agent, for a conversation no rule gives to anyone in particular.
      jsonObjectFrom(
        eb
          .selectFrom('ai_agents as a')
          .select(['a.id', 'a.name'])
          .whereRef('a.channel_id', '=', 'c.channel_id')
          .where('a.enabled', '=', true)
          .orderBy('a.position')
          .limit(1),
      ).as('first_ai_agent'),
      jsonArrayFrom(
        eb
          .selectFrom('routing_rules as r')
          .select(['r.id', 'r.name', 'r.conditions', 'r.actions'])
          .whereRef('r.channel_id', '=', 'c.channel_id')
          .orderBy('r.position')
          .orderBy('r.created_at'),
      ).as('rules'),
    ])
    .where('c.id', '=', conversationId)
    .executeTakeFirstOrThrow();
}

type RoutingView = Awaited<ReturnType<typeof readRoutingView>>;

/** A new conversation's routing, its SLA clock when people handle it, and its business hours, in one step. */
export interface NewConversationRoute extends RoutingDecision {
  sla: { dueAt: string; dueAtText: string } | null;
  /** Whether the SLA clock was looked at (false when the AI agent answers the customer first). */
  slaChecked: boolean;
  hours: BusinessHoursCheck;
}

export function createRoutingActivities(deps: ActivityDeps) {
  const { db } = deps;
  const { loadConversation } = createConversationActivities(deps);
  const activities = {
    /**
     * Routing rules in order, the first match decides; with none, the channel's first enabled AI
     * agent, else its human agents. Applies the rule's priority, labels and team on the way.
     */
    async routeConversation({ conversationId }: { conversationId: string }): Promise<RoutingDecision> {
      return route(conversationId, await readRoutingView(db, conversationId));
    },

    /** Open now, or when they open next. */
    async checkBusinessHours({ conversationId }: { conversationId: string }): Promise<BusinessHoursCheck> {
      return businessHoursCheck(await channelHours(db, conversationId));
    },

    /**
     * Starts the first-response clock (once per conversation): the deadline is the channel's target
     * counted in business time from now. Null when the channel has no SLA.
     */
    async startSlaClock({ conversationId }: { conversationId: string }): Promise<{ dueAt: string; dueAtText: string } | null> {
      const row = await db
        .selectFrom('conversations as c')
        .innerJoin('channels as ch', 'ch.id', 'c.channel_id')
        .select([
          'c.sla_due_at',
          'c.first_response_at',
          'ch.sla_first_response_seconds',
          'ch.business_hours_enabled',
          'ch.business_hours',
        ])
        .where('c.id', '=', conversationId)
        .executeTakeFirstOrThrow();
      return startSlaClockOf(conversationId, row);
    },

    /** Flags the breach and raises the priority one step. */
    async markSlaBreached({ conversationId }: { conversationId: string }): Promise<{ priority: Priority }> {
      const { priority, breachedNow } = await db.transaction().execute(async (trx) => {
        const row = await trx
          .selectFrom('conversations')
          .select(['priority', 'sla_breached_at'])
          .where('id', '=', conversationId)
          .forUpdate()
          .executeTakeFirstOrThrow();
        if (row.sla_breached_at) return { priority: row.priority, breachedNow: false };
        const priority = raisePriority(row.priority);
        await trx
          .updateTable('conversations')
          .set({ sla_breached_at: sql<Date>`now()`, priority, updated_at: sql<Date>`now()` })
          .where('id', '=', conversationId)
          .execute();
        await recordEvent(trx, conversationId, 'sla_breached', { priority });
        return { priority, breachedNow: true };
      });
      if (breachedNow) slaBreaches.inc();
      return { priority };
    },
  };

  /**
   * Routing rules in order, the first match decides; with none, the channel's first enabled AI agent, else its human
   * agents. Applies the rule's priority, labels and team on the way.
   */
  async function route(conversationId: string, conversation: RoutingView): Promise<RoutingDecision> {
    const { first_mail: firstMail, rules } = conversation;
    const hours = conversation.business_hours_enabled ? conversation.business_hours : null;
    const insideBusinessHours = !hours || isOpenAt(hours, new Date());
    const facts: RoutingFacts = {
      sender: (firstMail?.from_address ?? conversation.email ?? '').toLowerCase(),
      recipients: [...(firstMail?.to_addresses ?? []), ...(firstMail?.cc_addresses ?? [])],
      subject: firstMail?.subject ?? conversation.subject,
      body: firstMail?.reply_text ?? firstMail?.text_body ?? '',
      contactAttributes: conversation.attributes,
      insideBusinessHours,
      classification: firstMail?.classification ?? 'ordinary',
    };
    const rule = await firstMatchingRuleInTurns(rules, facts);
    // An AI answer to a forged sender would reach whoever was impersonated: people handle it, unless an agent vouched for it.
    const verdict = firstMail?.sender_verdict ?? 'ordinary';
    const aiWithheld =
      verdict !== 'ordinary' &&
      !(await db
        .selectFrom('conversation_events')
        .select('id')
        .where('conversation_id', '=', conversationId)
        .where('type', '=', 'released_from_spam')
        .executeTakeFirst());
    const priority = rule?.actions.priority ?? conversation.priority;
    const labels = [...new Set([...conversation.labels, ...(rule?.actions.labels ?? [])])];
    const target = rule?.actions.assignTo;
    const handler = await routeHandler(conversation, target, aiWithheld);
    const decision: RoutingDecision = { rule: rule?.name ?? null, handler, priority, insideBusinessHours };
    const routed = {
      type: 'routed' as const,
      data: {
        rule: rule ? describeRule(rule) : null,
        handler: handler.kind,
        priority,
        labels,
        ...(aiWithheld ? { aiWithheld: `the sender could not be verified (${verdict}): people handle it` } : {}),
      },
    };
    // The decision is known before anything is written: the claim keeps it, and a retry answers with the first one's.
    return changeConversationOnce(db, {
      conversationId,
      set: {
        priority,
        labels: JSON.stringify(labels),
        ...(target?.kind === 'team' ? { team_id: target.teamId } : {}),
        ...(handler.kind === 'agent' ? { assignee_id: handler.agent.id } : {}),
        ...(handler.kind === 'ai' ? { ai_agent_id: handler.aiAgent.id } : {}),
      },
      events:
        handler.kind === 'agent'
          ? [{ type: 'assigned', data: { assigneeId: handler.agent.id, strategy: 'routing_rule' } }, routed]
          : [routed],
      result: decision,
    });
  }

  /**
   * Who a rule's target (or, without one, the channel) gives the conversation to: the rule's agent while they are
   * available; the rule's AI agent while it is enabled, else the channel's first enabled one, unless AI is withheld;
   * else people.
   */
  async function routeHandler(
    conversation: RoutingView,
    target: RoutingRuleDefinition['actions']['assignTo'],
    aiWithheld: boolean,
  ): Promise<RouteHandler> {
    if (target?.kind === 'agent') {
      const agent = await db
        .selectFrom('channel_agents as ca')
        .innerJoin('users as u', 'u.id', 'ca.user_id')
        .select(['u.id', 'u.name'])
        .where('ca.channel_id', '=', conversation.channel_id)
        .where('u.id', '=', target.agentId)
        .where('u.available', '=', true)
        .executeTakeFirst();
      return agent ? { kind: 'agent', agent: { id: agent.id, name: agent.name } } : { kind: 'humans' };
    }
    if (target?.kind === 'team' || target?.kind === 'humans' || aiWithheld) return { kind: 'humans' };
    const ruleAiAgent =
      target?.kind === 'ai_agent'
        ? await db
            .selectFrom('ai_agents')
            .select(['id', 'name'])
            .where('channel_id', '=', conversation.channel_id)
            .where('id', '=', target.aiAgentId)
            .where('enabled', '=', true)
            .executeTakeFirst()
        : undefined;
    const aiAgent = ruleAiAgent ?? conversation.first_ai_agent;
    if (!aiAgent) return { kind: 'humans' };
    return {
      kind: 'ai',
      aiAgent: { id: aiAgent.id, name: aiAgent.name },
      answersOutsideBusinessHours: conversation.ai_outside_business_hours,
    };
  }

  /** The first-response clock of startSlaClock, from the conversation's SLA columns as read. */
  async function startSlaClockOf(
    conversationId: string,
    row: Pick<
      RoutingView,
      'sla_due_at' | 'first_response_at' | 'sla_first_response_seconds' | 'business_hours_enabled' | 'business_hours'
    >,
  ): Promise<{ dueAt: string; dueAtText: string } | null> {
    if (row.first_response_at || (!row.sla_due_at && !row.sla_first_response_seconds)) return null;
    const hours = row.business_hours_enabled ? row.business_hours : null;
    const describe = (at: Date) => (hours ? describeInstant(hours, at) : at.toISOString());
    if (row.sla_due_at) return { dueAt: row.sla_due_at.toISOString(), dueAtText: describe(row.sla_due_at) };
    const targetMs = row.sla_first_response_seconds! * 1000;
    const now = new Date();
    const dueAt = hours ? addBusinessTime(hours, now, targetMs) : new Date(now.getTime() + targetMs);
    if (!dueAt) return null; // business hours that never open: no deadline can be met or missed
    await db.transaction().execute(async (trx) => {
      await trx.updateTable('conversations').set({ sla_due_at: dueAt }).where('id', '=', conversationId).execute();
      await recordEvent(trx, conversationId, 'sla_started', { dueAt: dueAt.toISOString() });
    });
    return { dueAt: dueAt.toISOString(), dueAtText: describe(dueAt) };
  }

  /**
   * Triage's database steps in one (one local activity, not three): the routing rules, then the first-response
   * clock unless the AI agent answers the customer (as the workflow decides with `fromPerson`), then the business
   * hours. A retry repeats nothing: the routing is `once`, the clock keeps its deadline, the hours are a read.
   */
  async function routeNewConversation({
    conversationId,
    fromPerson,
  }: {
    conversationId: string;
    fromPerson: boolean;
  }): Promise<NewConversationRoute> {
    const view = await readRoutingView(db, conversationId); // what the three read, read once
    const routed = await route(conversationId, view);
    const slaChecked = !(routed.handler.kind === 'ai' && fromPerson);
    const sla = slaChecked ? await startSlaClockOf(conversationId, view) : null;
    return { ...routed, sla, slaChecked, hours: businessHoursCheck(view.business_hours_enabled ? view.business_hours : null) };
  }

  /**
   * Triage's first step: the conversation and its channel's settings and, when it is open and nobody has it, its
   * routing (routeNewConversation) at once. `fromPerson` unknown (a release from spam, no new mail): whether any
   * mail of the conversation came from a person.
   */
  async function triageConversation({
    conversationId,
    fromPerson,
  }: {
    conversationId: string;
    fromPerson?: boolean;
  }): Promise<{ context: ConversationContext; route: NewConversationRoute | null }> {
    // Run again with its task after a worker died in it, triage sees what its first attempt saw, not what that task
    // wrote since (the routing's or the queue's assignee, a reopened status): the task decides as it did then.
    const context = await keptRead(db, 'context', () => loadConversation({ conversationId }));
    if (context.status !== 'open' || context.assignee) return { context, route: null };
    return { context, route: await routeNewConversation({ conversationId, fromPerson: fromPerson ?? context.heardFromPerson }) };
  }

  return { ...activities, routeNewConversation, triageConversation };
}
