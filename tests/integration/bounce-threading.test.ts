import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

/** A delivery report (RFC 3464) from a mail system, returning the headers of `returnedMessageId`, referencing `references`. */
function bounce(input: { messageId: string; returnedMessageId: string; references?: string }): string {
  return [
    'From: Mail Delivery System <MAILER-DAEMON@mx.example.net>',
    'To: support@acme.example',
    'Subject: Undelivered Mail Returned to Sender',
    `Message-ID: <${input.messageId}>`,
    ...(input.references ? [`In-Reply-To: ${input.references}`, `References: ${input.references}`] : []),
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    'Your message could not be delivered.',
    '--b',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.example.net',
    '',
    'Final-Recipient: rfc822; ann@example.com',
    'Action: failed',
    'Status: 5.1.1',
    '--b',
    'Content-Type: text/rfc822-headers',
    '',
    'From: Acme Support <support@acme.example>',
    `Message-ID: ${input.returnedMessageId}`,
    'Subject: Re: A question',
    '--b--',
    '',
  ].join('\r\n');
}

// A bounce is filed on the conversation of the mail it returns. Anyone can write one, so only what
// nobody else knows counts: the reply token, or the Message-ID of a mail we sent.
describe('bounces thread only by what we sent', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks for writing!' },
    });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('files a bounce of our greeting on its conversation, and a forged one naming the customer’s Message-ID on a new one', async () => {
    const asked = await postMail(stack.api.url, team.channel, customerMail({ messageId: 'question-1@example.com' }));
    expect(asked.status).toBe(202);
    const conversationId: string = asked.body.conversationId;
    const greeting = await eventually(() =>
      stack.db
        .selectFrom('outbound_messages')
        .select('message_id')
        .where('conversation_id', '=', conversationId)
        .where('kind', '=', 'greeting')
        .executeTakeFirst(),
    );

    // Knows only what the customer (or anyone they wrote to) knows: their own Message-ID.
    const forged = await postMail(
      stack.api.url,
      team.channel,
      bounce({
        messageId: 'forged-1@mx.example.net',
        returnedMessageId: '<question-1@example.com>',
        references: '<question-1@example.com>',
      }),
    );
    expect(forged.status).toBe(202);
    expect(forged.body.conversationId).not.toBe(conversationId);

    const genuine = await postMail(
      stack.api.url,
      team.channel,
      bounce({ messageId: 'genuine-1@mx.example.net', returnedMessageId: greeting.message_id }),
    );
    expect(genuine.status).toBe(202);
    expect(genuine.body.conversationId).toBe(conversationId);
  });
});
