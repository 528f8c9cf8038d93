import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/connection.js';
import { WEEKDAYS, type BusinessHours } from '../../src/domain/business-hours.js';
import { formatDate } from '../../src/domain/message-catalogs.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';
import { customerMail } from '../support/mail.js';
import { historyPayloadValue } from '../support/payloads.js';

// The whole orchestration on the real parts: a mail outside business hours → the AI agent answers
// from the knowledge base → the customer asks for a person → handover note and out-of-office note →
// assignment when business hours open → the agent's reply → resolve → survey → rating.

/** Business hours (UTC) that open at `opensAt` (a whole minute) for three hours, and are closed before. */
function hoursOpeningAt(opensAt: number): BusinessHours {
  const start = DateTime.fromMillis(opensAt, { zone: 'UTC' });
  const end = start.plus({ hours: 3 });
  return {
    timeZone: 'UTC',
    weekly: { [WEEKDAYS[start.weekday - 1]!]: [{ start: start.toFormat('HH:mm'), end: end.toFormat('HH:mm') }] },
    closedDates: [],
  };
}

async function addAiAgent(db: Db, channelId: string, provider: 'knowledge_base' | 'openai_compatible') {
  const id = randomUUID();
  await db.insertInto('ai_agents').values({ id, channel_id: channelId, name: 'Mia', position: 0, provider }).execute();
  await db
    .insertInto('knowledge_articles')
    .values([
      {
        id: randomUUID(),
        channel_id: channelId,
        title: 'Missing invoice',
        body: 'Every invoice is in your account under Billing → Invoices. A missing invoice for a month appears there within a day; you can download it again as a PDF.',
      },
      {
        id: randomUUID(),
        channel_id: channelId,
        title: 'Shipping times',
        body: 'Parcels within Germany arrive in 2–3 working days.',
      },
    ])
    .execute();
  return { id, name: 'Mia' };
}

async function timerSummaries(stack: TestStack, conversationId: string): Promise<string[]> {
  const history = await stack.temporal.workflow.getHandle(conversationWorkflowId(conversationId)).fetchHistory();
  return Promise.all(
    (history.events ?? [])
      .filter((event) => event.timerStartedEventAttributes && event.userMetadata?.summary)
      .map(async (event) => String(await historyPayloadValue(event.userMetadata!.summary))),
  );
}

async function timelineOf(stack: TestStack, conversationId: string): Promise<string[]> {
  const rows = await stack.db
    .selectFrom('conversation_events')
    .select('type')
    .where('conversation_id', '=', conversationId)
    .orderBy('id')
    .execute();
  return rows.map((row) => row.type);
}

describe('a mail outside business hours: AI agent, escalation, assignment at opening, CSAT', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      csat: { delaySeconds: 2, linkValiditySeconds: 3600 },
    });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('answers with the AI agent, hands over on request, waits for the opening, and ends with a rating', async () => {
    const { api, capture, db } = stack;
    const [alice] = team.agents;
    // Opens at a whole minute at least 30 s from now: long enough for everything before the opening.
    const opensAt = Math.ceil((Date.now() + 30_000) / 60_000) * 60_000;
    await db
      .updateTable('channels')
      .set({
        business_hours_enabled: true,
        business_hours: JSON.stringify(hoursOpeningAt(opensAt)),
        out_of_office_text: 'Our team is out right now.',
        ai_outside_business_hours: true,
      })
      .where('id', '=', team.channel.id)
      .execute();
    await addAiAgent(db, team.channel.id, 'knowledge_base');

    // Outside hours, the AI agent answers from the knowledge base, threaded and from its name.
    const posted = await postMail(
      api.url,
      team.channel,
      customerMail({
        messageId: 'invoice-1@mail.example.com',
        subject: 'Invoice missing',
        text: 'Hello, the invoice for March is missing in my account. Where can I find the invoice?',
      }),
    );
    expect(posted.status).toBe(202);
    const { conversationId } = posted.body;
    const aiAnswer = await capture.waitFor((mail) => mail.inReplyTo === '<invoice-1@mail.example.com>');
    expect(aiAnswer.headers.from).toContain('Mia');
    expect(aiAnswer.text).toContain('Billing → Invoices');
    const inAi = await callApi(api.url, alice!.apiKey, 'GET', `/v1/conversations/${conversationId}`);
    expect(inAi.body).toMatchObject({ stage: 'ai', assigneeId: null });

    // The customer asks for a person: a handover note, then the out-of-office note naming the opening.
    await postMail(
      api.url,
      team.channel,
      customerMail({
        messageId: 'invoice-2@mail.example.com',
        subject: 'Re: Invoice missing',
        text: 'Thanks, but I would like to talk to a real person, please.',
        inReplyTo: aiAnswer.messageId!,
      }),
    );
    const handover = await capture.waitFor((mail) => mail.text.includes('handing your request over'));
    expect(handover.headers.from).toContain('Mia');
    const outOfOffice = await capture.waitFor((mail) => mail.text.includes('Our team is out right now.'));
    const openingText = DateTime.fromMillis(opensAt, { zone: 'UTC' }).toFormat('ccc d LLL HH:mm');
    // In the customer's language (English here) and the channel's time zone.
    expect(outOfOffice.text).toContain(`We are back ${formatDate('en', new Date(opensAt), 'UTC')}.`);
    expect(outOfOffice.headers['auto-submitted']).toBe('auto-replied');
    const waiting = await eventually(async () => {
      const { body } = await callApi(api.url, alice!.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'waiting_for_hours' ? body : undefined;
    });
    expect(waiting.assigneeId).toBeNull();
    const summaries = await eventually(async () => {
      const found = await timerSummaries(stack, conversationId);
      return found.length > 0 ? found : undefined;
    });
    expect(summaries).toEqual([`Until business hours open ${openingText} UTC`]);

    // At the opening (not before) the conversation goes to an agent.
    const assigned = await eventually(
      async () => {
        const { body } = await callApi(api.url, alice!.apiKey, 'GET', `/v1/conversations/${conversationId}`);
        return body.stage === 'assigned' ? body : undefined;
      },
      opensAt - Date.now() + 60_000,
      500,
    );
    const assignedEvent = await db
      .selectFrom('conversation_events')
      .select('created_at')
      .where('conversation_id', '=', conversationId)
      .where('type', '=', 'assigned')
      .executeTakeFirstOrThrow();
    expect(assignedEvent.created_at.getTime()).toBeGreaterThanOrEqual(opensAt);
    const agent = team.agents.find((a) => a.id === assigned.assigneeId)!;

    // The agent answers and resolves; the survey follows, and the rating is recorded on submit.
    const reply = await callApi(api.url, agent.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'Hello Ann, I have put the March invoice back into your account.',
    });
    expect(reply.status).toBe(201);
    await capture.waitFor((mail) => mail.messageId === reply.body.messageId);
    const resolved = await callApi(api.url, agent.apiKey, 'POST', `/v1/conversations/${conversationId}/resolve`);
    expect(resolved).toMatchObject({ status: 200, body: { status: 'resolved' } });
    const survey = await capture.waitFor((mail) => mail.subject.startsWith('How did we do?'));
    const link = /(http\S+\/csat\/\S+)/.exec(survey.text)![1]!;
    expect((await fetch(link, { method: 'POST', body: new URLSearchParams({ rating: '4' }) })).status).toBe(200);
    await eventually(() =>
      db
        .selectFrom('csat_surveys')
        .select('rating')
        .where('conversation_id', '=', conversationId)
        .where('rating', '=', 4)
        .executeTakeFirst(),
    );

    expect(await timelineOf(stack, conversationId)).toEqual([
      'customer_message',
      'routed',
      'ai_reply_sent',
      'customer_message',
      'escalated',
      'handover_sent',
      'out_of_office_sent',
      'assigned',
      'agent_reply_sent',
      'resolved',
      'csat_survey_sent',
      'csat_rated',
    ]);
    const report = await callApi(
      api.url,
      team.admin.apiKey,
      'GET',
      `/v1/reports/csat?groupBy=agent&channelId=${team.channel.id}`,
    );
    expect(report.body.groups).toEqual([expect.objectContaining({ agentId: agent.id, ratings: 1, average: 4 })]);
  });
});

describe('an AI agent on an OpenAI-compatible provider', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let provider: Server;
  const requests: any[] = [];
  // What the provider does next: answer with this confidence, or fail like an overloaded service.
  let behaviour: { confidence: number } | 'unavailable' = { confidence: 0.9 };

  beforeAll(async () => {
    provider = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk) => (body += chunk));
      request.on('end', () => {
        requests.push({ path: request.url, authorization: request.headers.authorization, body: JSON.parse(body) });
        if (behaviour === 'unavailable') {
          response.writeHead(503, { 'content-type': 'application/json' });
          response.end(JSON.stringify({ error: { message: 'overloaded' } }));
          return;
        }
        const content = JSON.stringify({
          answer: 'You can download every invoice under Billing → Invoices.',
          confidence: behaviour.confidence,
        });
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(
          JSON.stringify({
            id: 'chatcmpl-1',
            object: 'chat.completion',
            choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
          }),
        );
      });
    });
    await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
    const { port } = provider.address() as AddressInfo;
    stack = await startTestStack({
      openAiCompatible: { baseUrl: `http://127.0.0.1:${port}/v1`, apiKey: 'sk-test', model: 'test-model' },
    });
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
    await addAiAgent(stack.db, team.channel.id, 'openai_compatible');
  });

  afterAll(async () => {
    await stack?.stop();
    await new Promise((resolve) => provider?.close(resolve));
  });

  it('answers through the provider, and hands over to people when the provider keeps failing', async () => {
    const { api, capture, db } = stack;
    const posted = await postMail(
      api.url,
      team.channel,
      customerMail({ messageId: 'openai-1@mail.example.com', subject: 'Invoice', text: 'Where do I find my invoices?' }),
    );
    const answer = await capture.waitFor((mail) => mail.inReplyTo === '<openai-1@mail.example.com>');
    expect(answer.text).toContain('Billing → Invoices');
    expect(requests[0]).toMatchObject({
      path: '/v1/chat/completions',
      authorization: 'Bearer sk-test',
      body: { model: 'test-model' },
    });
    expect(requests[0].body.messages.at(-1)).toMatchObject({ role: 'user', content: expect.stringContaining('Where do I find') });

    behaviour = 'unavailable';
    await postMail(
      api.url,
      team.channel,
      customerMail({
        messageId: 'openai-2@mail.example.com',
        subject: 'Re: Invoice',
        text: 'The page is empty for March. What now?',
        inReplyTo: answer.messageId!,
      }),
    );
    await capture.waitFor((mail) => mail.text.includes('handing your request over'));
    const assigned = await eventually(async () => {
      const row = await db
        .selectFrom('conversations')
        .select(['assignee_id', 'stage'])
        .where('id', '=', posted.body.conversationId)
        .where('stage', '=', 'assigned')
        .executeTakeFirst();
      return row;
    });
    expect(team.agents.map((a) => a.id)).toContain(assigned.assignee_id);
    const escalation = await db
      .selectFrom('conversation_events')
      .select('data')
      .where('conversation_id', '=', posted.body.conversationId)
      .where('type', '=', 'escalated')
      .executeTakeFirstOrThrow();
    expect(escalation.data.reason).toMatch(/^the AI provider failed: .*503/);
    // One first answer, then three attempts that failed.
    expect(requests).toHaveLength(4);
  });
});
