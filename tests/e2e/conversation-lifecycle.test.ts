import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signCsatToken } from '../../src/domain/csat-token.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

const question = readFileSync(new URL('../fixtures/eml/customer-question.eml', import.meta.url));

function customerReply(inReplyTo: string, references: string[]) {
  return [
    'From: "Ann Example" <ann@example.com>',
    'To: support@acme.example',
    'Subject: Re: Invoice for März is missing',
    'Date: Mon, 16 Nov 2026 11:30:00 +0100',
    'Message-ID: <answer-2.4712@mail.example.com>',
    `In-Reply-To: ${inReplyTo}`,
    `References: ${references.join(' ')}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Got it, thank you!',
    '',
  ].join('\r\n');
}

describe('a forwarded email becomes a resolved, rated conversation', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Hi! We received your mail and will answer soon.' },
      csat: { delaySeconds: 2, linkValiditySeconds: 3600 },
    });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('greets, assigns, threads the reply and the answer, resolves, surveys and records the rating', async () => {
    const [alice] = team.agents;
    const { api, capture, db } = stack;

    // The forwarder posts the customer's mail.
    const posted = await postMail(api.url, team.channel, question);
    expect(posted.status).toBe(202);
    const { conversationId } = posted.body;

    // The greeting arrives at the customer, threaded and marked as automatic.
    const greeting = await capture.waitFor((mail) => mail.text.includes('We received your mail'));
    expect(greeting.envelope.to).toEqual(['ann@example.com']);
    expect(greeting.inReplyTo).toBe('<question-1.4711@mail.example.com>');
    expect(greeting.headers['auto-submitted']).toBe('auto-replied');
    expect(greeting.subject).toBe('Re: Invoice for März is missing');

    // Round robin hands it to the agent who joined the channel first.
    const assigned = await eventually(async () => {
      const { body } = await callApi(api.url, alice!.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? body : undefined;
    });
    expect(assigned.assigneeId).toBe(alice!.id);
    expect(assigned.contact).toMatchObject({ email: 'ann@example.com', name: 'Ann Example' });

    // The agent answers through the API; the mail is threaded under the customer's question.
    const reply = await callApi(api.url, alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'Hello Ann, the invoice is attached to your account again.',
    });
    expect(reply.status).toBe(201);
    const replyMail = await capture.waitFor((mail) => mail.messageId === reply.body.messageId);
    expect(replyMail.inReplyTo).toBe('<question-1.4711@mail.example.com>');
    expect(replyMail.references).toEqual(['<question-1.4711@mail.example.com>', greeting.messageId]);
    expect(replyMail.headers.from).toContain('Alice Agent');
    expect(replyMail.headers['auto-submitted']).toBeUndefined();
    expect(replyMail.text).toContain('the invoice is attached');

    // The customer answers the reply: it lands in the same conversation.
    const answer = await postMail(
      api.url,
      team.channel,
      customerReply(replyMail.messageId!, [...replyMail.references, replyMail.messageId!]),
    );
    expect(answer.status).toBe(202);
    expect(answer.body.conversationId).toBe(conversationId);

    // The agent resolves; the survey follows after the channel's delay.
    const resolved = await callApi(api.url, alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/resolve`);
    expect(resolved).toMatchObject({ status: 200, body: { status: 'resolved' } });
    const again = await callApi(api.url, alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/resolve`);
    expect(again).toMatchObject({ status: 409, contentType: 'application/problem+json' });
    const survey = await capture.waitFor((mail) => mail.subject.startsWith('How did we do?'));
    expect(survey.envelope.to).toEqual(['ann@example.com']);
    const link = /(http\S+\/csat\/\S+)/.exec(survey.text)?.[1];
    expect(link).toBeDefined();

    // Opening the link (as a mail scanner would) casts nothing; submitting the form does.
    const page = await fetch(link!);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<form method="post"');
    const before = await db
      .selectFrom('csat_surveys')
      .select('rating')
      .where('conversation_id', '=', conversationId)
      .executeTakeFirstOrThrow();
    expect(before.rating).toBeNull();
    const submitted = await fetch(link!, {
      method: 'POST',
      body: new URLSearchParams({ rating: '5', comment: 'Quick and kind' }),
    });
    expect(submitted.status).toBe(200);
    const rated = await eventually(() =>
      db
        .selectFrom('csat_surveys')
        .select(['rating', 'comment'])
        .where('conversation_id', '=', conversationId)
        .where('rating', 'is not', null)
        .executeTakeFirst(),
    );
    expect(rated).toEqual({ rating: 5, comment: 'Quick and kind' });

    // The conversation's record tells the whole story.
    const { body: detail } = await callApi(api.url, alice!.apiKey, 'GET', `/v1/conversations/${conversationId}`);
    expect(detail.messages.map((m: { kind: string }) => m.kind)).toEqual([
      'customer',
      'greeting',
      'reply',
      'customer',
      'csat_survey',
    ]);
    const timeline: string[] = detail.timeline.map((e: { type: string }) => e.type);
    // The greeting goes out alongside routing (never holding it back), before the agent could answer.
    expect(timeline.indexOf('greeting_sent')).toBeLessThan(timeline.indexOf('agent_reply_sent'));
    expect(timeline.filter((type) => type !== 'greeting_sent')).toEqual([
      'customer_message',
      'routed',
      'assigned',
      'agent_reply_sent',
      'customer_message',
      'resolved',
      'csat_survey_sent',
      'csat_rated',
    ]);
  });

  it('sends no greeting to an auto-reply, and hands the next conversation to the next agent', async () => {
    const [alice, bob] = team.agents;
    const autoReply = question
      .toString()
      .replace('question-1.4711', 'vacation-1')
      .replace('Subject: Invoice for', 'Auto-Submitted: auto-replied\r\nSubject: Out of office: Invoice for');
    const person = question.toString().replace('question-1.4711', 'question-2.4713');
    const assigneeOf = (conversationId: string) =>
      eventually(async () => {
        const row = await stack.db
          .selectFrom('conversations')
          .select('assignee_id')
          .where('id', '=', conversationId)
          .where('stage', '=', 'assigned')
          .executeTakeFirst();
        return row?.assignee_id;
      });

    // Alice had the conversation of the first test, so round robin continues with Bob, then Alice.
    const first = await postMail(stack.api.url, team.channel, autoReply);
    expect(first.status).toBe(202);
    expect(await assigneeOf(first.body.conversationId)).toBe(bob!.id);
    const second = await postMail(stack.api.url, team.channel, person);
    expect(second.status).toBe(202);
    expect(await assigneeOf(second.body.conversationId)).toBe(alice!.id);

    await stack.capture.waitFor((mail) => mail.inReplyTo === '<question-2.4713@mail.example.com>');
    const greetings = await stack.db
      .selectFrom('outbound_messages')
      .select('conversation_id')
      .where('kind', '=', 'greeting')
      .where('conversation_id', 'in', [first.body.conversationId, second.body.conversationId])
      .execute();
    expect(greetings.map((row) => row.conversation_id)).toEqual([second.body.conversationId]);
    expect(stack.capture.mails.some((mail) => mail.inReplyTo === '<vacation-1@mail.example.com>')).toBe(false);
  });

  it("answers bad requests with problems, and hides other accounts' conversations", async () => {
    const [alice] = team.agents;
    const { api, db } = stack;
    const posted = await postMail(api.url, team.channel, question.toString().replace('question-1.4711', 'question-3.4714'));
    const path = `/v1/conversations/${posted.body.conversationId}`;

    const emptyReply = await callApi(api.url, alice!.apiKey, 'POST', `${path}/replies`, { text: '   ' });
    expect(emptyReply).toMatchObject({ status: 422, contentType: 'application/problem+json' });
    expect(emptyReply.body.errors).toEqual([{ field: 'text', message: 'the reply text is empty' }]);
    expect((await callApi(api.url, 'mr_not-a-key', 'GET', path)).status).toBe(401);
    expect((await callApi(api.url, alice!.apiKey, 'GET', '/v1/conversations/7d4c1a52-0000-4000-8000-000000000000')).status).toBe(
      404,
    );

    const otherTeam = await seedSupportTeam(db, { name: 'Other', emailAddress: 'help@other.example' });
    const outsider = otherTeam.agents[0]!.apiKey;
    expect((await callApi(api.url, outsider, 'GET', path)).status).toBe(404);
    expect((await callApi(api.url, outsider, 'POST', `${path}/resolve`)).status).toBe(404);
    const list = await callApi(api.url, outsider, 'GET', '/v1/conversations');
    expect(list).toMatchObject({ status: 200, body: { data: [] } });
  });

  it('threads a reply that reaches only the Reply-To token address, without any threading headers', async () => {
    const posted = await postMail(
      stack.api.url,
      team.channel,
      question.toString().replace('question-1.4711', 'question-token.1'),
    );
    const greeting = await stack.capture.waitFor((mail) => mail.inReplyTo === '<question-token.1@mail.example.com>');
    const replyTo = greeting.headers['reply-to'];
    expect(replyTo).toMatch(/^support\+[0-9a-f]{32}@acme\.example$/);
    const bare = [
      'From: Ann Example <ann@example.com>',
      `To: ${replyTo}`,
      'Subject: one more thing',
      'Message-ID: <bare-1@mail.example.com>',
      '',
      'Also the April one, please.',
      '',
    ].join('\r\n');
    const answered = await postMail(stack.api.url, team.channel, bare);
    expect(answered.body.conversationId).toBe(posted.body.conversationId);
  });

  it('takes a rating, and a changed one, after the conversation closed and its run ended, until the link expires', async () => {
    const { api, capture, db, temporal } = stack;
    // A channel of its own whose quiet period ends before the survey goes out: the conversation closes at once.
    const quick = await seedSupportTeam(db, {
      name: 'Quick Support',
      emailAddress: 'quick@acme.example',
      csat: { delaySeconds: 1, linkValiditySeconds: 3600 },
    });
    await db.updateTable('channels').set({ close_after_seconds: 0 }).where('id', '=', quick.channel.id).execute();
    const [agent] = quick.agents;
    const mail = question
      .toString()
      .replace('question-1.4711', 'question-closed.1')
      .replace('support@acme.example', 'quick@acme.example');
    const { conversationId } = (await postMail(api.url, quick.channel, mail)).body;
    await eventually(async () => {
      const { body } = await callApi(api.url, agent!.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? body : undefined;
    });
    expect((await callApi(api.url, agent!.apiKey, 'POST', `/v1/conversations/${conversationId}/resolve`)).status).toBe(200);
    const survey = await capture.waitFor(
      (mail) => mail.subject.startsWith('How did we do?') && mail.references.includes('<question-closed.1@mail.example.com>'),
    );
    const link = /(http\S+\/csat\/[^?\s]+)/.exec(survey.text)![1]!;
    const workflow = temporal.workflow.getHandle(conversationWorkflowId(conversationId));
    await workflow.result(); // the run ends as it closes: it does not wait while the link takes ratings
    const { runId } = await workflow.describe();

    const rate = (rating: string, comment?: string) =>
      fetch(link, { method: 'POST', body: new URLSearchParams({ rating, ...(comment ? { comment } : {}) }) });
    expect((await rate('2')).status).toBe(200);
    expect((await rate('4', 'Better after a day')).status).toBe(200);
    const row = await db
      .selectFrom('csat_surveys')
      .select(['rating', 'comment'])
      .where('conversation_id', '=', conversationId)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ rating: 4, comment: 'Better after a day' });
    const { body: detail } = await callApi(api.url, agent!.apiKey, 'GET', `/v1/conversations/${conversationId}`);
    expect(detail.status).toBe('closed');
    expect(detail.timeline.map((event: { type: string }) => event.type).slice(-4)).toEqual([
      'csat_survey_sent',
      'closed',
      'csat_rated',
      'csat_rated',
    ]);
    // Rating woke nothing: the conversation's run is the one that ended.
    const after = await workflow.describe();
    expect({ runId: after.runId, status: after.status.name }).toEqual({ runId, status: 'COMPLETED' });

    // A link past its validity takes nothing.
    const surveyId = (
      await db.selectFrom('csat_surveys').select('id').where('conversation_id', '=', conversationId).executeTakeFirstOrThrow()
    ).id;
    const expired = signCsatToken({ surveyId, expiresAt: Math.floor(Date.now() / 1000) - 60 }, TEST_SECRET_KEY);
    const late = await fetch(`${api.url}/csat/${expired}`, { method: 'POST', body: new URLSearchParams({ rating: '1' }) });
    expect(late.status).toBe(410);
    expect(
      (await db.selectFrom('csat_surveys').select('rating').where('id', '=', surveyId).executeTakeFirstOrThrow()).rating,
    ).toBe(4);
  });

  it('is readable in the Temporal UI: static summary and searchable by channel and stage', async () => {
    const posted = await postMail(stack.api.url, team.channel, question.toString().replace('question-1.4711', 'question-ui.1'));
    const workflowId = conversationWorkflowId(posted.body.conversationId);
    const description = await stack.temporal.workflow.getHandle(workflowId).describe();
    expect(await description.staticSummary()).toBe("Email conversation on channel 'Acme Support': Invoice for März is missing");
    const found = await eventually(async () => {
      const ids: string[] = [];
      for await (const execution of stack.temporal.workflow.list({
        query: `MailroomChannelId = '${team.channel.id}' AND MailroomStage = 'assigned' AND WorkflowId = '${workflowId}'`,
      })) {
        ids.push(execution.workflowId);
      }
      return ids.length > 0 ? ids : undefined;
    });
    expect(found).toEqual([workflowId]);
  });
});
