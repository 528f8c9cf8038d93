import { randomUUID } from 'node:crypto';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { QueueResult } from '../../src/activities/assignment.js';
import { createActivities, type ActivityDeps } from '../../src/activities/index.js';
import { addAgentToChannel, createAccount, createChannel, createUser } from '../../src/db/seed.js';
import { createTestDatabase } from '../support/database.js';

// A worker killed after an activity's transaction committed, but before it reported, gets the activity
// retried: the retry must not do it again (a second 'routed' or 'assigned' on the timeline, a conversation
// taken from its agent and queued again). Found by the chaos test; here each activity runs twice as the
// same activity execution (same workflow run and activity id), on PostgreSQL.

type Triage = Awaited<ReturnType<ReturnType<typeof createActivities>['triageConversation']>>;

describe('activities that change the database, retried after they committed', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let activities: ReturnType<typeof createActivities>;
  let channelId: string;
  let accountId: string;
  let contactId: string;
  let agentIds: string[];

  beforeAll(async () => {
    database = await createTestDatabase();
    const { db } = database;
    activities = createActivities({ db } as unknown as ActivityDeps);
    const account = await createAccount(db, 'Retries');
    accountId = account.id;
    const channel = await createChannel(db, { accountId, name: 'Retries', emailAddress: 'retries@acme.example' });
    channelId = channel.id;
    await db.updateTable('channels').set({ default_agent_capacity: 1 }).where('id', '=', channelId).execute();
    agentIds = [];
    for (const name of ['Ada', 'Ben']) {
      const user = await createUser(db, { accountId, name, email: `${name.toLowerCase()}@acme.example`, role: 'agent' });
      await addAgentToChannel(db, channelId, user.id);
      agentIds.push(user.id);
    }
    contactId = randomUUID();
    await db.insertInto('contacts').values({ id: contactId, account_id: accountId, email: 'cy@example.com' }).execute();
  });

  afterAll(async () => {
    await database?.drop();
  });

  async function newConversation(): Promise<string> {
    const id = randomUUID();
    await database.db
      .insertInto('conversations')
      .values({
        id,
        account_id: accountId,
        channel_id: channelId,
        contact_id: contactId,
        subject: 'Retried',
        status: 'open',
        stage: 'triage',
        updated_at: new Date(),
      })
      .execute();
    return id;
  }

  /** Runs the activity as one attempt of the given activity execution. */
  function attemptOf(runId: string, activityId: string, attempt: number) {
    return new MockActivityEnvironment({
      activityId,
      attempt,
      workflowExecution: { workflowId: 'conversation-retried', runId },
    });
  }

  /** The channel's first routing rule, matching every conversation here (their subject is 'Retried'). */
  async function addRule(name: string, actions: Record<string, unknown>): Promise<{ id: string }> {
    const rule = {
      id: randomUUID(),
      channel_id: channelId,
      position: 0,
      name,
      conditions: JSON.stringify([{ field: 'subject', operator: 'contains', value: 'Retried' }]),
      actions: JSON.stringify(actions),
    };
    await database.db.insertInto('routing_rules').values(rule).execute();
    return rule;
  }

  const timeline = async (conversationId: string) =>
    (
      await database.db
        .selectFrom('conversation_events')
        .select('type')
        .where('conversation_id', '=', conversationId)
        .orderBy('created_at')
        .execute()
    ).map((event) => event.type);

  it('routes, assigns and resolves once however often an attempt that committed is retried', async () => {
    const conversationId = await newConversation();
    const runId = randomUUID();

    const routed = await attemptOf(runId, '1', 1).run(activities.routeConversation, { conversationId });
    expect(await attemptOf(runId, '1', 2).run(activities.routeConversation, { conversationId })).toEqual(routed);

    const assigned = (await attemptOf(runId, '2', 1).run(activities.assignFromQueue, { conversationId })) as QueueResult;
    expect(assigned.assignee).not.toBeNull();
    // The retry answers what the first attempt did: the conversation stays with that agent.
    expect(await attemptOf(runId, '2', 2).run(activities.assignFromQueue, { conversationId })).toEqual(assigned);
    const row = await database.db
      .selectFrom('conversations')
      .select(['assignee_id', 'queued_at'])
      .where('id', '=', conversationId)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ assignee_id: assigned.assignee!.id, queued_at: null });

    const resolvedBy = { kind: 'agent' as const, id: assigned.assignee!.id };
    await attemptOf(runId, '3', 1).run(activities.markResolved, { conversationId, resolvedBy });
    await attemptOf(runId, '3', 2).run(activities.markResolved, { conversationId, resolvedBy });

    expect(await timeline(conversationId)).toEqual(['routed', 'assigned', 'resolved']);
  });

  it("answers a retried routing with the first attempt's decision, however the agents changed meanwhile, and records each event once", async () => {
    const conversationId = await newConversation();
    const runId = randomUUID();
    const [ada] = agentIds;
    const rule = await addRule('Retried to Ada', { assignTo: { kind: 'agent', agentId: ada }, priority: 'high' });
    try {
      const routed = await attemptOf(runId, '4', 1).run(activities.routeConversation, { conversationId });
      expect(routed).toMatchObject({ rule: 'Retried to Ada', handler: { kind: 'agent', agent: { id: ada } }, priority: 'high' });
      // Ada is away by the retry: it still answers what the first attempt did, and assigns nobody else.
      await database.db.updateTable('users').set({ available: false }).where('id', '=', ada!).execute();
      expect(await attemptOf(runId, '4', 2).run(activities.routeConversation, { conversationId })).toEqual(routed);

      const suppressed = { conversationId, kind: 'out_of_office' as const, reason: 'the sender is a mailing list' };
      await attemptOf(runId, '5', 1).run(activities.recordAutomaticMailSuppressed, suppressed);
      await attemptOf(runId, '5', 2).run(activities.recordAutomaticMailSuppressed, suppressed);

      expect(await timeline(conversationId)).toEqual(['assigned', 'routed', 'automatic_mail_suppressed']);
      const row = await database.db
        .selectFrom('conversations')
        .select(['assignee_id', 'priority'])
        .where('id', '=', conversationId)
        .executeTakeFirstOrThrow();
      expect(row).toEqual({ assignee_id: ada, priority: 'high' });
    } finally {
      await database.db.deleteFrom('routing_rules').where('id', '=', rule.id).execute();
      await database.db.updateTable('users').set({ available: true }).where('id', '=', ada!).execute();
    }
  });

  it("answers a retried routing to the queue (its claim, row and event in one statement) with the first attempt's decision, though a rule matches since", async () => {
    const conversationId = await newConversation();
    const runId = randomUUID();
    const routed = await attemptOf(runId, '6', 1).run(activities.routeConversation, { conversationId });
    expect(routed).toMatchObject({ rule: null, handler: { kind: 'humans' }, priority: 'normal' });
    const rule = await addRule('Retried is urgent', { priority: 'urgent', labels: ['retried'] });
    try {
      expect(await attemptOf(runId, '6', 2).run(activities.routeConversation, { conversationId })).toEqual(routed);
      const row = await database.db
        .selectFrom('conversations')
        .select(['priority', 'labels'])
        .where('id', '=', conversationId)
        .executeTakeFirstOrThrow();
      expect(row).toEqual({ priority: 'normal', labels: [] });
      expect(await timeline(conversationId)).toEqual(['routed']);
      // Another execution routes by the rules as they are now.
      expect(await attemptOf(runId, '10', 1).run(activities.routeConversation, { conversationId })).toMatchObject({
        rule: 'Retried is urgent',
        priority: 'urgent',
      });
    } finally {
      await database.db.deleteFrom('routing_rules').where('id', '=', rule.id).execute();
    }
  });

  it('answers a triage run again with its workflow task as its first attempt did, though that task assigned the conversation since', async () => {
    const conversationId = await newConversation();
    const runId = randomUUID();
    const first = (await attemptOf(runId, '1', 1).run(activities.triageConversation, {
      conversationId,
      fromPerson: true,
    })) as Triage;
    expect(first.context.assignee).toBeNull();
    expect(first.route?.handler).toEqual({ kind: 'humans' });
    // The task went on: the queue gave the conversation to an agent (its next local activity), then the worker died.
    const assigned = (await attemptOf(runId, '2', 1).run(activities.assignFromQueue, { conversationId })) as QueueResult;
    expect(assigned.assignee).not.toBeNull();

    // The task runs again from its start (a local activity's attempts start again at 1): triage answers as it did, so
    // the task takes the queue step again, whose `once` key answers with the agent it gave.
    const again = await attemptOf(runId, '1', 1).run(activities.triageConversation, { conversationId, fromPerson: true });
    expect(again).toEqual(first);
    expect(await attemptOf(runId, '2', 1).run(activities.assignFromQueue, { conversationId })).toEqual(assigned);
    // Triage in a later task (another execution) reads the conversation as it is.
    const later = await attemptOf(runId, '9', 1).run(activities.triageConversation, { conversationId, fromPerson: true });
    expect(later).toMatchObject({ context: { assignee: assigned.assignee }, route: null });
    expect(await timeline(conversationId)).toEqual(['routed', 'assigned']);
  });

  it('does it again for another activity execution: the key is the execution, not the input', async () => {
    const conversationId = await newConversation();
    const runId = randomUUID();
    const by = { id: agentIds[0]!, name: 'Ada' };
    await attemptOf(runId, '7', 1).run(activities.recordEscalation, { conversationId, aiAgentId: randomUUID(), reason: 'one' });
    await attemptOf(runId, '7', 2).run(activities.recordEscalation, { conversationId, aiAgentId: randomUUID(), reason: 'one' });
    await attemptOf(runId, '8', 1).run(activities.markReopened, { conversationId, reopenedBy: by });
    await attemptOf(randomUUID(), '8', 1).run(activities.markReopened, { conversationId, reopenedBy: by });
    expect(await timeline(conversationId)).toEqual(['escalated', 'reopened', 'reopened']);
  });
});
