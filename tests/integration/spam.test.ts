import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

// Spoofing, spam and backscatter, through the forwarder, PostgreSQL, the worker and the SMTP sink:
// a mail the channel's receiving server (mx.acme.example) says is forged or spam is stored and shown,
// never answered automatically, kept out of the queue until an agent releases it.
describe('spoofed senders and spam', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  const admin = (method: string, path: string, body?: unknown) => callApi(stack.api.url, team.admin.apiKey, method, path, body);
  const agent = (method: string, path: string, body?: unknown) =>
    callApi(stack.api.url, team.agents[0]!.apiKey, method, path, body);

  const DMARC_FAIL =
    'Authentication-Results: mx.acme.example; spf=pass smtp.mailfrom=bank.example; dmarc=fail (p=reject dis=reject) header.from=bank.example';
  const post = (messageId: string, from: string, headers: string[]) =>
    postMail(stack.api.url, team.channel, customerMail({ messageId, from, headers, subject: `Mail ${messageId}` }));
  const conversation = (id: string) => agent('GET', `/v1/conversations/${id}`).then((r) => r.body);
  const stageOf = (id: string, stage: string) =>
    eventually(async () => {
      const found = await conversation(id);
      return found.stage === stage ? found : undefined;
    });
  const mailedTo = (address: string) => stack.capture.mails.filter((mail) => mail.envelope.to.includes(address));

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks for writing!' },
    });
    const configured = await admin('PATCH', `/v1/channels/${team.channel.id}`, {
      senders: { trustedAuthservIds: ['mx.acme.example'] },
    });
    expect(configured.status).toBe(200);
    expect(configured.body.senders).toEqual({
      trustedAuthservIds: ['mx.acme.example'],
      trustUnnamedAuthenticationResults: false,
      trustSpamHeaders: true,
    });
    // An AI agent that would answer anything: it must never see spam or an unverified sender.
    await stack.db
      .insertInto('ai_agents')
      .values({
        id: randomUUID(),
        channel_id: team.channel.id,
        name: 'Mia',
        position: 0,
        provider: 'knowledge_base',
        enabled: true,
      })
      .execute();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('keeps a mail failing DMARC at the trusted server as spam: shown with the reason, listed, never answered', async () => {
    const posted = await post('forged-1@bank.example', 'Bank <security@bank.example>', [DMARC_FAIL]);
    expect(posted.status).toBe(202);
    // Its workflow ran and ended in the spam stage: nothing is waiting to be sent.
    const outcome = await stack.temporal.workflow.getHandle(conversationWorkflowId(posted.body.conversationId)).result();
    expect(outcome).toEqual({ conversationId: posted.body.conversationId, stage: 'spam' });
    const spam = await stageOf(posted.body.conversationId, 'spam');
    expect(spam.status).toBe('spam');
    expect(spam.messages[0].sender).toEqual({
      verdict: 'spam',
      reasons: [expect.stringMatching(/DMARC fail for bank\.example .*mx\.acme\.example/)],
    });
    expect(spam.timeline.map((event: { type: string }) => event.type)).toContain('marked_spam');
    const listed = await agent('GET', '/v1/conversations?status=spam');
    expect(listed.body.data.map((c: { id: string }) => c.id)).toContain(posted.body.conversationId);
    // Nothing goes to the forged address: not now, not for the agent by mistake.
    expect((await agent('POST', `/v1/conversations/${posted.body.conversationId}/replies`, { text: 'Hi' })).status).toBe(409);
    expect(mailedTo('security@bank.example')).toEqual([]);
  });

  it('believes a spam flag of the receiving server, and no Authentication-Results a sender wrote themselves', async () => {
    const flagged = await post('flagged-1@example.net', 'pills@example.net', [
      'X-Spam-Flag: YES',
      'X-Spam-Status: Yes, score=12.3',
    ]);
    expect((await stageOf(flagged.body.conversationId, 'spam')).messages[0].sender.verdict).toBe('spam');
    // A pass from an untrusted id below the trusted fail changes nothing; a fail from an untrusted id alone is no verdict.
    const forgedPass = await post('forged-2@bank.example', 'security@bank.example', [
      DMARC_FAIL,
      'Authentication-Results: attacker.example; dmarc=pass header.from=bank.example',
    ]);
    expect((await stageOf(forgedPass.body.conversationId, 'spam')).status).toBe('spam');
    const untrusted = await post('untrusted-1@example.org', 'carl@example.org', [
      'Authentication-Results: attacker.example; dmarc=fail header.from=example.org',
    ]);
    await stack.capture.waitFor((mail) => mail.envelope.to.includes('carl@example.org'));
    expect((await conversation(untrusted.body.conversationId)).messages[0].sender.verdict).toBe('ordinary');
  });

  it('gives an unverified sender (DMARC failed, not enforced) to people only, with no automatic mail', async () => {
    const posted = await post('unverified-1@shop.example', 'dora@shop.example', [
      'Authentication-Results: mx.acme.example; dmarc=fail (p=none dis=none) header.from=shop.example',
    ]);
    const routed = await eventually(async () => {
      const found = await conversation(posted.body.conversationId);
      return found.timeline.some((event: { type: string }) => event.type === 'routed') ? found : undefined;
    });
    expect(routed.status).toBe('open');
    expect(routed.aiAgentId).toBeNull();
    const events = routed.timeline as Array<{ type: string; data: Record<string, unknown> }>;
    expect(events.find((event) => event.type === 'routed')!.data.aiWithheld).toMatch(/could not be verified/);
    expect(events.find((event) => event.type === 'automatic_mail_suppressed')?.data).toMatchObject({
      kind: 'greeting',
      reason: expect.stringMatching(/^the sender could not be verified: DMARC fail for shop\.example/),
    });
    expect(mailedTo('dora@shop.example')).toEqual([]);
  });

  it('routes a released conversation like a new one: greeting, rules, AI agent', async () => {
    const posted = await post('released-1@partner.example', 'Erin <erin@partner.example>', [
      'Authentication-Results: mx.acme.example; dmarc=fail (p=quarantine) header.from=partner.example',
    ]);
    const id: string = posted.body.conversationId;
    await stack.temporal.workflow.getHandle(conversationWorkflowId(id)).result();
    expect(mailedTo('erin@partner.example')).toEqual([]);

    const released = await agent('POST', `/v1/conversations/${id}/not-spam`);
    expect(released).toMatchObject({ status: 200, body: { status: 'open', stage: 'triage' } });
    await stack.capture.waitFor(
      (mail) => mail.envelope.to.includes('erin@partner.example') && mail.text.includes('Thanks for writing!'),
    );
    // The greeting's event is written once the mail server took it: a moment after the capture has it.
    const routed = await eventually(async () => {
      const found = await conversation(id);
      const greeted = found.timeline.some((event: { type: string }) => event.type === 'greeting_sent');
      return found.stage !== 'triage' && found.stage !== 'spam' && greeted ? found : undefined;
    });
    expect(routed.status).toBe('open');
    expect(routed.timeline.map((event: { type: string }) => event.type)).toEqual(
      expect.arrayContaining(['marked_spam', 'released_from_spam', 'greeting_sent', 'routed']),
    );
    expect((await agent('POST', `/v1/conversations/${id}/not-spam`)).status).toBe(409);
    // Every automatic mail went to the one sender, in one envelope of one recipient.
    for (const mail of stack.capture.mails) expect(mail.envelope.to).toHaveLength(1);
  });
});

describe('a closed conversation', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  const api = (method: string, path: string, body?: unknown) => callApi(stack.api.url, team.admin.apiKey, method, path, body);

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
    await api('PATCH', `/v1/channels/${team.channel.id}`, {
      closeAfterSeconds: 1,
      senders: { trustedAuthservIds: ['mx.acme.example'] },
    });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('stays closed for an auto-reply or a forged mail from the customer’s address; the customer reopens it', async () => {
    const asked = await postMail(stack.api.url, team.channel, customerMail({ messageId: 'closing-1@example.com' }));
    const id: string = asked.body.conversationId;
    await eventually(async () => ((await api('GET', `/v1/conversations/${id}`)).body.stage === 'assigned' ? true : undefined));
    expect((await api('POST', `/v1/conversations/${id}/resolve`)).status).toBe(200);
    const handle = stack.temporal.workflow.getHandle(conversationWorkflowId(id));
    expect(await handle.result()).toEqual({ conversationId: id, stage: 'closed' });

    const followUps = [
      customerMail({
        messageId: 'closing-auto@example.com',
        inReplyTo: '<closing-1@example.com>',
        headers: ['Auto-Submitted: auto-replied'],
        text: 'I am out of the office.',
      }),
      customerMail({
        messageId: 'closing-forged@example.com',
        inReplyTo: '<closing-1@example.com>',
        headers: ['Authentication-Results: mx.acme.example; dmarc=fail (p=reject) header.from=example.com'],
        text: 'Please send the invoice to my new account.',
      }),
    ];
    for (const raw of followUps) {
      const posted = await postMail(stack.api.url, team.channel, raw);
      expect(posted.body.conversationId).toBe(id);
      // The run the mail started ends again, and the conversation is closed as before.
      expect(await stack.temporal.workflow.getHandle(conversationWorkflowId(id)).result()).toEqual({
        conversationId: id,
        stage: 'closed',
      });
      expect((await api('GET', `/v1/conversations/${id}`)).body.status).toBe('closed');
    }

    const customer = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: 'closing-2@example.com', inReplyTo: '<closing-1@example.com>', text: 'One more question.' }),
    );
    expect(customer.body.conversationId).toBe(id);
    await eventually(async () => ((await api('GET', `/v1/conversations/${id}`)).body.status === 'open' ? true : undefined));
  });
});

describe('automatic mail limits per recipient domain and per channel', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks for writing!' },
    });
    const limited = await callApi(stack.api.url, team.admin.apiKey, 'PATCH', `/v1/channels/${team.channel.id}`, {
      limits: { automaticMailLimitPerDomainPerHour: 2, automaticMailLimitPerChannelPerHour: 3 },
    });
    expect(limited.body.limits).toMatchObject({ automaticMailLimitPerDomainPerHour: 2, automaticMailLimitPerChannelPerHour: 3 });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  async function suppressionOf(conversationId: string) {
    return eventually(async () => {
      const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      const events = body.timeline as Array<{ type: string; data: { reason?: string } }>;
      if (events.some((event) => event.type === 'greeting_sent')) return 'sent';
      return events.find((event) => event.type === 'automatic_mail_suppressed')?.data.reason;
    });
  }

  it('greets two senders of a domain within the hour, not a third; and the channel at most three in all', async () => {
    const outcomes: string[] = [];
    for (const [n, from] of [
      'a1@flood.example',
      'a2@flood.example',
      'a3@flood.example',
      'b1@other.example',
      'c1@third.example',
    ].entries()) {
      const posted = await postMail(stack.api.url, team.channel, customerMail({ messageId: `flood-${n}@x.example`, from }));
      outcomes.push(await suppressionOf(posted.body.conversationId));
    }
    expect(outcomes).toEqual([
      'sent',
      'sent',
      'flood.example had 2 automatic mails from this channel in the last hour (limit 2)',
      'sent',
      'the channel sent 3 automatic mails in the last hour (limit 3)',
    ]);
  });
});
