import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RoutingRuleDefinition } from '../../src/domain/routing-rules.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { conversationSnapshotQuery } from '../../src/workflows/messages.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';
import { customerMail as mail } from '../support/mail.js';

// Routing rules and the first-response SLA on the real parts: the API, the worker, PostgreSQL, Temporal.

describe('routing rules and the SLA through the whole stack', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let billingTeamId: string;
  let aiAgentId: string;

  async function conversation(conversationId: string, stage: string) {
    return eventually(async () => {
      const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === stage ? body : undefined;
    });
  }

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
    const { db } = stack;
    const [alice, bob] = team.agents;
    billingTeamId = randomUUID();
    await db.insertInto('teams').values({ id: billingTeamId, account_id: team.account.id, name: 'Billing' }).execute();
    await db.insertInto('team_members').values({ team_id: billingTeamId, user_id: bob!.id }).execute();
    aiAgentId = randomUUID();
    await db
      .insertInto('ai_agents')
      .values({
        id: aiAgentId,
        channel_id: team.channel.id,
        name: 'Mia',
        position: 0,
        provider: 'knowledge_base',
        enabled: false,
      })
      .execute();
    await db
      .insertInto('contacts')
      .values({
        id: randomUUID(),
        account_id: team.account.id,
        email: 'vip@bigcorp.example',
        attributes: JSON.stringify({ plan: 'enterprise' }),
      })
      .execute();
    const rules: RoutingRuleDefinition[] = [
      {
        name: 'Enterprise customers',
        conditions: [{ field: 'contact_attribute', attribute: 'plan', operator: 'is', value: 'enterprise' }],
        actions: { assignTo: { kind: 'agent', agentId: alice!.id }, priority: 'urgent', labels: ['vip'] },
      },
      {
        name: 'Invoices to billing',
        conditions: [{ field: 'subject', operator: 'matches', value: '\\b(invoice|rechnung)\\b' }],
        actions: { assignTo: { kind: 'team', teamId: billingTeamId }, priority: 'high', labels: ['billing'] },
      },
      {
        name: 'Automatic mail is low priority',
        conditions: [{ field: 'classification', operator: 'is', value: 'auto_reply' }],
        actions: { priority: 'low' },
      },
    ];
    await db
      .insertInto('routing_rules')
      .values(
        rules.map((rule, position) => ({
          id: randomUUID(),
          channel_id: team.channel.id,
          position,
          name: rule.name,
          conditions: JSON.stringify(rule.conditions),
          actions: JSON.stringify(rule.actions),
        })),
      )
      .execute();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('applies the first matching rule: a contact attribute beats a subject rule further down', async () => {
    const [alice] = team.agents;
    const posted = await postMail(
      stack.api.url,
      team.channel,
      mail({ messageId: 'vip-1@bigcorp.example', from: 'vip@bigcorp.example', subject: 'Invoice question', text: 'Hi' }),
    );
    const routed = await conversation(posted.body.conversationId, 'assigned');
    expect(routed).toMatchObject({ assigneeId: alice!.id, priority: 'urgent', labels: ['vip'] });
    const event = await stack.db
      .selectFrom('conversation_events')
      .select('data')
      .where('conversation_id', '=', posted.body.conversationId)
      .where('type', '=', 'routed')
      .executeTakeFirstOrThrow();
    expect(event.data.rule).toContain('rule "Enterprise customers"');
  });

  it("assigns within the rule's team only, with the rule's priority and labels", async () => {
    const [, bob] = team.agents;
    for (const n of [1, 2, 3]) {
      const posted = await postMail(
        stack.api.url,
        team.channel,
        mail({
          messageId: `invoice-${n}@example.com`,
          from: `customer${n}@example.com`,
          subject: `Rechnung ${n}`,
          text: 'Hallo',
        }),
      );
      const routed = await conversation(posted.body.conversationId, 'assigned');
      expect(routed).toMatchObject({ assigneeId: bob!.id, teamId: billingTeamId, priority: 'high', labels: ['billing'] });
    }
  });

  it('without a matching rule, goes to the enabled AI agent; with none enabled, to the human agents', async () => {
    const plain = await postMail(
      stack.api.url,
      team.channel,
      mail({ messageId: 'plain-1@example.com', from: 'carl@example.com', subject: 'Hello', text: 'A question' }),
    );
    expect(await conversation(plain.body.conversationId, 'assigned')).toMatchObject({ aiAgentId: null, priority: 'normal' });

    await stack.db.updateTable('ai_agents').set({ enabled: true }).where('id', '=', aiAgentId).execute();
    const toAi = await postMail(
      stack.api.url,
      team.channel,
      mail({ messageId: 'plain-2@example.com', from: 'dora@example.com', subject: 'Hello', text: 'Another question' }),
    );
    // Mia has no knowledge articles: no confident answer, so she hands over at once, never dropping it.
    const handedOver = await conversation(toAi.body.conversationId, 'assigned');
    expect(handedOver.aiAgentId).toBe(aiAgentId);
    const escalated = await stack.db
      .selectFrom('conversation_events')
      .select('data')
      .where('conversation_id', '=', toAi.body.conversationId)
      .where('type', '=', 'escalated')
      .executeTakeFirstOrThrow();
    expect(escalated.data.reason).toMatch(/^confidence 0\.00 is below the channel's threshold/);
    await stack.db.updateTable('ai_agents').set({ enabled: false }).where('id', '=', aiAgentId).execute();
  });

  it('flags an SLA breach, raises the priority, offers it to the next agent, and shows it in the UI and the API', async () => {
    const [alice, bob] = team.agents;
    await stack.db.updateTable('channels').set({ sla_first_response_seconds: 3 }).where('id', '=', team.channel.id).execute();
    const posted = await postMail(
      stack.api.url,
      team.channel,
      mail({ messageId: 'sla-1@example.com', from: 'erin@example.com', subject: 'Urgent-ish', text: 'Please help' }),
    );
    const { conversationId } = posted.body;
    const first = await conversation(conversationId, 'assigned');
    expect(first.sla.dueAt).not.toBeNull();

    const breached = await eventually(async () => {
      const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      // Breach and re-offer are two steps: wait until both show.
      return body.sla.breachedAt && body.assigneeId !== first.assigneeId ? body : undefined;
    });
    expect(breached.priority).toBe('high');
    expect(breached.assigneeId).not.toBe(first.assigneeId);
    expect([alice!.id, bob!.id]).toContain(breached.assigneeId);

    const workflowId = conversationWorkflowId(conversationId);
    expect(await stack.temporal.workflow.getHandle(workflowId).query(conversationSnapshotQuery)).toMatchObject({
      slaBreached: true,
    });
    const found = await eventually(async () => {
      const ids: string[] = [];
      for await (const execution of stack.temporal.workflow.list({
        query: `MailroomSlaBreached = true AND MailroomPriority = 'high' AND WorkflowId = '${workflowId}'`,
      })) {
        ids.push(execution.workflowId);
      }
      return ids.length > 0 ? ids : undefined;
    });
    expect(found).toEqual([workflowId]);
  });

  it('is not breached when an agent answers in time', async () => {
    await stack.db.updateTable('channels').set({ sla_first_response_seconds: 3600 }).where('id', '=', team.channel.id).execute();
    const posted = await postMail(
      stack.api.url,
      team.channel,
      mail({ messageId: 'sla-2@example.com', from: 'fred@example.com', subject: 'Question', text: 'Hi there' }),
    );
    const { conversationId } = posted.body;
    const assigned = await conversation(conversationId, 'assigned');
    const agent = team.agents.find((a) => a.id === assigned.assigneeId)!;
    await callApi(stack.api.url, agent.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, { text: 'On it!' });
    const answered = await eventually(async () => {
      const { body } = await callApi(stack.api.url, agent.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.sla.firstResponseAt ? body : undefined;
    });
    expect(answered.sla).toMatchObject({ breachedAt: null });
    expect(Date.parse(answered.sla.firstResponseAt)).toBeLessThan(Date.parse(answered.sla.dueAt));
  });
});
