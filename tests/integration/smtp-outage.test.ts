import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callApi, eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

// The mail server away or saying no must not hold a conversation back: the greeting goes out alongside
// routing, an outage delays only the mail, and a refusal for good is shown and the conversation goes on.

describe('the outbound mail server away, or refusing', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Hi! We received your message.' },
    });
  });

  afterAll(async () => {
    stack?.capture.refuse(null);
    await stack?.stop();
  });

  const detailOf = async (conversationId: string) =>
    (await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`)).body;
  interface MessageView {
    kind: string;
    deliveryStatus: string | null;
    deliveryError: string | null;
  }
  const greetingOf = (detail: { messages: MessageView[] }) => detail.messages.find((message) => message.kind === 'greeting');

  async function newConversation(from: string): Promise<string> {
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: `${randomUUID()}@example.com`, from, text: 'Where is my parcel?' }),
    );
    expect(posted.status).toBe(202);
    return posted.body.conversationId as string;
  }

  it('assigns the conversation while the mail server answers "try later", and greets once it takes mail again', async () => {
    stack.capture.refuse({ at: 'data', code: 451, message: '4.3.0 mailbox server busy, try later' });
    const conversationId = await newConversation('"Tom Example" <tom@example.com>');

    const assigned = await eventually(async () => {
      const detail = await detailOf(conversationId);
      return detail.stage === 'assigned' && detail.assigneeId ? detail : undefined;
    });
    // Routed and assigned with the greeting still waiting for the server: queued, with why.
    const waiting = await eventually(async () => {
      const greeting = greetingOf(await detailOf(conversationId));
      return greeting?.deliveryStatus === 'queued' && greeting.deliveryError ? greeting : undefined;
    });
    expect(waiting.deliveryError).toContain('451');
    expect(stack.capture.mails.filter((mail) => mail.envelope.to.includes('tom@example.com'))).toEqual([]);
    expect(assigned.assigneeId).toBeTruthy();

    stack.capture.refuse(null);
    await stack.capture.waitFor((mail) => mail.envelope.to.includes('tom@example.com'), 60_000);
    await eventually(async () => (greetingOf(await detailOf(conversationId))?.deliveryStatus === 'sent' ? true : undefined));
    expect(stack.capture.mails.filter((mail) => mail.envelope.to.includes('tom@example.com'))).toHaveLength(1);
  });

  it('marks a greeting the server refuses for good failed, with its reply, and the conversation goes on', async () => {
    stack.capture.refuse({ at: 'rcpt', code: 550, message: '5.1.1 no such user here' });
    const conversationId = await newConversation('"Una Known" <una@example.com>');

    const failed = await eventually(async () => {
      const detail = await detailOf(conversationId);
      return greetingOf(detail)?.deliveryStatus === 'failed' ? detail : undefined;
    });
    expect(greetingOf(failed)!.deliveryError).toContain('550');
    expect(failed.timeline.map((event: { type: string }) => event.type)).toContain('delivery_failed');
    const assigned = await eventually(async () => {
      const detail = await detailOf(conversationId);
      return detail.stage === 'assigned' ? detail : undefined;
    });
    stack.capture.refuse(null);

    // An agent's reply afterwards goes out as usual.
    const assignee = team.agents.find((agent) => agent.id === assigned.assigneeId)!;
    const reply = await callApi(stack.api.url, assignee.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'Could you check the address you wrote from?',
    });
    expect(reply.status).toBe(201);
    await stack.capture.waitFor((mail) => mail.messageId === reply.body.messageId);
    expect(stack.capture.mails.filter((mail) => mail.envelope.to.includes('una@example.com'))).toHaveLength(1);
  });
});
