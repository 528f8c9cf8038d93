import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities, type Activities } from '../../src/activities/index.js';
import { LOOPBACK_NETWORKS } from '../../src/config.js';
import type { Ingest } from '../../src/ingest/ingest.js';
import { SmtpCapture } from '../../src/mail/smtp-capture.js';
import { createMailTransport, type MailTransport } from '../../src/mail/transport.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

// Issue 10: every outgoing mail has a delivery status. A send holds a lease on its outbox row, so a
// retry or a second attempt at the same time never sends it twice; a permanent refusal is not retried
// but shown; a bounce of a mail we sent marks it. The mail activities are called here as Temporal would
// call them (directly, or in a mock activity context), over the real database and a real SMTP server:
// what the workflow does with DeliveryFailed is the workflow's tests' to show.

/** A delivery report (RFC 3464) returning the headers of our mail `returnedMessageId`. */
function deliveryReport(input: { messageId: string; returnedMessageId: string; action: 'failed' | 'delayed' }): string {
  return [
    'From: Mail Delivery System <MAILER-DAEMON@mx.example.net>',
    'To: support@acme.example',
    'Subject: Undelivered Mail Returned to Sender',
    `Message-ID: <${input.messageId}>`,
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
    `Action: ${input.action}`,
    `Status: ${input.action === 'failed' ? '5.1.1' : '4.4.1'}`,
    ...(input.action === 'failed'
      ? ['Diagnostic-Code: smtp; 550 5.1.1 <ann@example.com>:', '    Recipient address rejected: User unknown']
      : ['Diagnostic-Code: smtp; 451 4.4.1 mailbox busy']),
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

async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ApplicationFailure);
  return error as ApplicationFailure;
}

describe('delivery status of outgoing mail', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  /** The channel's own SMTP server, which the tests make refuse or answer slowly. */
  let server: SmtpCapture;
  let transport: MailTransport;
  let activities: Activities;

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks for writing!' },
    });
    server = new SmtpCapture();
    const { port } = await server.listen();
    await stack.db
      .updateTable('channels')
      .set({ smtp_host: '127.0.0.1', smtp_port: port, smtp_secure: false })
      .where('id', '=', team.channel.id)
      .execute();
    transport = createMailTransport(stack.smtpUrl, { allowedPrivateNetworks: LOOPBACK_NETWORKS });
    activities = createActivities({
      db: stack.db,
      mail: transport,
      publicUrl: stack.api.url,
      secretKey: TEST_SECRET_KEY,
      allowedPrivateNetworks: LOOPBACK_NETWORKS,
      ingest: {} as Ingest, // the mail activities never ingest
    });
  });

  afterAll(async () => {
    transport?.close();
    await server?.close();
    await stack?.stop();
  });

  /** A conversation of a new contact, as ingest would open it, without its workflow: the tests call the activities. */
  async function openConversation(): Promise<{ conversationId: string; email: string }> {
    const email = `customer-${randomUUID().slice(0, 8)}@example.com`;
    const contactId = randomUUID();
    await stack.db.insertInto('contacts').values({ id: contactId, account_id: team.account.id, email, name: 'Ann' }).execute();
    const conversationId = randomUUID();
    await stack.db
      .insertInto('conversations')
      .values({
        id: conversationId,
        account_id: team.account.id,
        channel_id: team.channel.id,
        contact_id: contactId,
        subject: 'A question',
        status: 'open',
        stage: 'triage',
        updated_at: new Date(),
      })
      .execute();
    return { conversationId, email };
  }

  const outboxRow = (id: string) =>
    stack.db.selectFrom('outbound_messages').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

  const eventsOf = async (conversationId: string, type: string) =>
    (
      await stack.db
        .selectFrom('conversation_events')
        .select('data')
        .where('conversation_id', '=', conversationId)
        .where('type', '=', type)
        .execute()
    ).map((event) => event.data);

  async function apiMessage(conversationId: string, outboxId: string) {
    const { status, body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
    expect(status).toBe(200);
    return (body.messages as Array<Record<string, unknown>>).find((message) => message.id === outboxId);
  }

  const arrived = (messageId: string) => server.mails.filter((mail) => mail.messageId === messageId);

  it.each([
    { at: 'rcpt' as const, expected: 'RCPT TO: 550 5.1.1 Recipient address rejected: User unknown' },
    { at: 'data' as const, expected: '550 5.1.1 Recipient address rejected: User unknown' },
  ])(
    'marks the greeting failed with the server’s reply when the SMTP server refuses it for good ($at), and never sends it on a retry',
    async ({ at, expected }) => {
      const { conversationId } = await openConversation();
      const outboxId = randomUUID();
      server.refuse({ at, code: 550, message: '5.1.1 Recipient address rejected: User unknown' });
      const refusedBefore = server.refused;
      try {
        const failure = await failureOf(activities.sendGreeting({ conversationId, outboxId }));
        expect(failure.type).toBe('DeliveryFailed');
        expect(failure.nonRetryable).toBe(true);
        expect(failure.message).toContain(expected);

        const row = await outboxRow(outboxId);
        expect(row).toMatchObject({ delivery_status: 'failed', sent_at: null, claimed_until: null, claim_token: null });
        expect(row.delivery_error).toContain(expected);
        expect(await eventsOf(conversationId, 'delivery_failed')).toEqual([
          { outboundMessageId: outboxId, kind: 'greeting', reason: row.delivery_error },
        ]);

        // Temporal would not retry it, but a retry, or the workflow sending it again, finds it failed.
        const again = await failureOf(activities.sendGreeting({ conversationId, outboxId }));
        expect(again.type).toBe('DeliveryFailed');
        expect(again.nonRetryable).toBe(true);
        expect(server.refused).toBe(refusedBefore + 1);
        expect(await eventsOf(conversationId, 'delivery_failed')).toHaveLength(1);
        expect(await eventsOf(conversationId, 'greeting_sent')).toHaveLength(0);

        expect(await apiMessage(conversationId, outboxId)).toMatchObject({
          direction: 'outbound',
          kind: 'greeting',
          sentAt: null,
          deliveryStatus: 'failed',
          deliveryError: row.delivery_error,
        });
      } finally {
        server.refuse(null);
      }
    },
  );

  it('retries a temporary refusal (451) and sends the mail once, with the reason shown while it waits', async () => {
    const { conversationId, email } = await openConversation();
    const outboxId = randomUUID();
    server.refuse({ at: 'data', code: 451, message: '4.3.0 Try again later', times: 1 });

    const deferred = await failureOf(activities.sendGreeting({ conversationId, outboxId }));
    expect(deferred.type).toBe('DeliveryDeferred');
    expect(deferred.nonRetryable).toBe(false);
    expect(await outboxRow(outboxId)).toMatchObject({
      delivery_status: 'queued',
      delivery_error: 'DATA: 451 4.3.0 Try again later',
      claimed_until: null,
    });
    expect(await apiMessage(conversationId, outboxId)).toMatchObject({
      deliveryStatus: 'queued',
      deliveryError: 'DATA: 451 4.3.0 Try again later',
    });

    // Temporal's retry: the same row, the same Message-ID, sent now; a further retry sends nothing.
    const sent = await activities.sendGreeting({ conversationId, outboxId });
    expect(sent).toMatchObject({ outboundMessageId: outboxId });
    expect(await activities.sendGreeting({ conversationId, outboxId })).toEqual(sent);
    const mails = arrived(sent!.messageId);
    expect(mails).toHaveLength(1);
    expect(mails[0]!.envelope.to).toEqual([email]);
    const row = await outboxRow(outboxId);
    expect(row).toMatchObject({ delivery_status: 'sent', delivery_error: null, claim_token: null });
    expect(row.sent_at).toBeInstanceOf(Date);
    expect(await eventsOf(conversationId, 'greeting_sent')).toHaveLength(1);
    expect(await apiMessage(conversationId, outboxId)).toMatchObject({ deliveryStatus: 'sent', deliveryError: null });
  });

  it('sends an agent’s reply once when two deliveries of it run at the same time against a slow server', async () => {
    const { conversationId } = await openConversation();
    const outboxId = randomUUID();
    const written = await activities.writeAgentReply({
      conversationId,
      outboxId,
      authorId: team.agents[0]!.id,
      text: 'Your parcel is on its way.',
    });
    server.holdMails(2_000);
    try {
      const results = await Promise.allSettled([activities.deliverOutbox({ outboxId }), activities.deliverOutbox({ outboxId })]);
      const fulfilled = results.filter((result) => result.status === 'fulfilled');
      const rejected = results.filter((result) => result.status === 'rejected');
      expect(fulfilled).toEqual([{ status: 'fulfilled', value: written }]);
      expect(rejected).toHaveLength(1);
      const inProgress = rejected[0]!.reason as ApplicationFailure;
      expect(inProgress).toBeInstanceOf(ApplicationFailure);
      expect(inProgress.type).toBe('DeliveryInProgress');
      expect(inProgress.nonRetryable).toBe(false);
      expect(inProgress.nextRetryDelay).toBeDefined();
    } finally {
      server.holdMails(0);
    }
    // The retry of the one that found it being sent: the mail went out, nothing more is sent.
    expect(await activities.deliverOutbox({ outboxId })).toEqual(written);
    expect(arrived(written.messageId)).toHaveLength(1);
    expect(await eventsOf(conversationId, 'agent_reply_sent')).toHaveLength(1);
  });

  it('holds back a retry while a send’s lease runs, and resends with the same Message-ID once it ran out (the worker died)', async () => {
    const { conversationId } = await openConversation();
    const outboxId = randomUUID();
    const written = await activities.writeAgentReply({
      conversationId,
      outboxId,
      authorId: team.agents[1]!.id,
      text: 'We are on it.',
    });
    // A send that claimed the row and then died with its worker, its lease still running.
    await stack.db
      .updateTable('outbound_messages')
      .set({ claim_token: randomUUID(), claimed_until: new Date(Date.now() + 30_000) })
      .where('id', '=', outboxId)
      .execute();
    const held = await failureOf(activities.deliverOutbox({ outboxId }));
    expect(held.type).toBe('DeliveryInProgress');
    expect(held.nextRetryDelay).toBeDefined();
    expect(arrived(written.messageId)).toHaveLength(0);

    await stack.db
      .updateTable('outbound_messages')
      .set({ claimed_until: new Date(Date.now() - 1_000) })
      .where('id', '=', outboxId)
      .execute();
    expect(await activities.deliverOutbox({ outboxId })).toEqual(written);
    expect(arrived(written.messageId)).toHaveLength(1);
    expect(await outboxRow(outboxId)).toMatchObject({ delivery_status: 'sent', message_id: written.messageId });
  });

  it('heartbeats and renews its lease while the SMTP server takes its time', async () => {
    const { conversationId } = await openConversation();
    const outboxId = randomUUID();
    const written = await activities.writeAgentReply({
      conversationId,
      outboxId,
      authorId: team.agents[0]!.id,
      text: 'One moment please.',
    });
    const environment = new MockActivityEnvironment();
    let heartbeats = 0;
    environment.on('heartbeat', () => (heartbeats += 1));
    const leaseUntil = async () => (await outboxRow(outboxId)).claimed_until;
    server.holdMails(7_000);
    try {
      const delivered = environment.run(activities.deliverOutbox, { outboxId });
      const claimed = await eventually(async () => (await leaseUntil()) ?? undefined);
      await new Promise((resolve) => setTimeout(resolve, 5_500));
      expect((await leaseUntil())!.getTime()).toBeGreaterThan(claimed.getTime());
      expect(await delivered).toEqual(written);
    } finally {
      server.holdMails(0);
    }
    // One as the send starts, one on the clock (every 5 s) while the server holds the mail.
    expect(heartbeats).toBeGreaterThanOrEqual(2);
    expect(await outboxRow(outboxId)).toMatchObject({ delivery_status: 'sent', claimed_until: null });
    expect(arrived(written.messageId)).toHaveLength(1);
  });

  it('marks a mail bounced when a delivery report for it comes in through the forwarder, and not for a mere delay', async () => {
    const { conversationId } = await openConversation();
    const greetingId = randomUUID();
    const greeting = (await activities.sendGreeting({ conversationId, outboxId: greetingId }))!;
    const replyId = randomUUID();
    const reply = await activities.writeAgentReply({
      conversationId,
      outboxId: replyId,
      authorId: team.agents[0]!.id,
      text: 'Here is the answer.',
    });
    await activities.deliverOutbox({ outboxId: replyId });

    const delayed = await postMail(
      stack.api.url,
      team.channel,
      deliveryReport({ messageId: `${randomUUID()}@mx.example.net`, returnedMessageId: reply.messageId, action: 'delayed' }),
    );
    expect(delayed.status).toBe(202);
    expect(delayed.body.conversationId).toBe(conversationId);
    expect(await outboxRow(replyId)).toMatchObject({ delivery_status: 'sent', delivery_error: null });

    const bounced = await postMail(
      stack.api.url,
      team.channel,
      deliveryReport({ messageId: `${randomUUID()}@mx.example.net`, returnedMessageId: greeting.messageId, action: 'failed' }),
    );
    expect(bounced.status).toBe(202);
    expect(bounced.body.conversationId).toBe(conversationId);
    const reason = 'ann@example.com: 550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown';
    expect(await outboxRow(greetingId)).toMatchObject({ delivery_status: 'bounced', delivery_error: reason });
    expect(await eventsOf(conversationId, 'delivery_bounced')).toEqual([
      { outboundMessageId: greetingId, kind: 'greeting', reason, inboundMessageId: bounced.body.inboundMessageId },
    ]);
    expect(await apiMessage(conversationId, greetingId)).toMatchObject({ deliveryStatus: 'bounced', deliveryError: reason });
    expect(await apiMessage(conversationId, replyId)).toMatchObject({ deliveryStatus: 'sent', deliveryError: null });
    // A bounced mail is not sent again.
    expect(await activities.sendGreeting({ conversationId, outboxId: greetingId })).toEqual(greeting);
    expect(arrived(greeting.messageId)).toHaveLength(1);
  });
});
