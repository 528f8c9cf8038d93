import { randomUUID } from 'node:crypto';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccount, createChannel, createUser } from '../../src/db/seed.js';
import { readAsRecipient } from '../../src/mail/outgoing.js';
import { SmtpCapture } from '../../src/mail/smtp-capture.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';
import { customerMail } from '../support/mail.js';

// A5: the preview of a reply equals, header for header, the mail the SMTP server then receives; the
// channel's subject and From-name templates (A6, A7) show in both.

function parcelMail(messageId: string, subject: string) {
  return customerMail({ messageId, subject, from: '"Zoë Example" <zoe@example.com>', text: 'My parcel never arrived.' });
}

describe('reply preview', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  async function openConversation(subject: string): Promise<string> {
    const posted = await postMail(stack.api.url, team.channel, parcelMail(`${randomUUID()}@example.com`, subject));
    expect(posted.status).toBe(202);
    const conversationId: string = posted.body.conversationId;
    await eventually(async () => {
      const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? body : undefined;
    });
    return conversationId;
  }

  it('shows the mail exactly as the SMTP server then receives it, templates, thread and HTML included', async () => {
    await stack.db
      .updateTable('channels')
      .set({
        default_subject: 'Your request of {{conversation.started_at}}',
        from_name: '{{agent.name}} at Acme',
        business_hours: JSON.stringify({ timeZone: 'Europe/Berlin', weekly: {}, closedDates: [] }),
      })
      .where('id', '=', team.channel.id)
      .execute();
    const conversationId = await openConversation('Parcel missing');
    const [alice] = team.agents;
    const reply = {
      text: 'Hello Zoë,\n\nthe parcel is on its way: https://track.example/parcel?id=42&lang=en.\n<b>not bold</b>\n\nAlice',
    };

    const preview = await callApi(
      stack.api.url,
      alice!.apiKey,
      'POST',
      `/v1/conversations/${conversationId}/replies/preview`,
      reply,
    );
    expect(preview.status).toBe(200);
    const { created_at: startedAt } = await stack.db
      .selectFrom('conversations')
      .select('created_at')
      .where('id', '=', conversationId)
      .executeTakeFirstOrThrow();
    const startedText = DateTime.fromJSDate(startedAt, { zone: 'Europe/Berlin' }).toFormat('yyyy-MM-dd HH:mm ZZ');
    expect(preview.body).toMatchObject({
      from: { name: 'Alice Agent at Acme', address: 'support@acme.example' },
      to: 'zoe@example.com',
      subject: `Your request of ${startedText}`,
    });
    expect(preview.body.inReplyTo).toMatch(/@example\.com>$/);
    expect(preview.body.html).toContain('<a href="https://track.example/parcel?id=42&amp;lang=en">');
    expect(preview.body.html).toContain('&lt;b&gt;not bold&lt;/b&gt;');
    // Previewing sends nothing.
    expect(stack.capture.mails.filter((mail) => mail.envelope.to.includes('zoe@example.com'))).toHaveLength(0);

    const sent = await callApi(stack.api.url, alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, reply);
    expect(sent.status).toBe(201);
    const received = await stack.capture.waitFor((mail) => mail.messageId === sent.body.messageId);
    const asRead = await readAsRecipient(received.raw);
    expect(asRead.headers).toEqual(preview.body.headers);
    expect(asRead.subject).toBe(preview.body.subject);
    expect(asRead.text).toBe(preview.body.text);
    expect(asRead.html).toBe(preview.body.html);
    expect(preview.body.headers.map((header: { name: string }) => header.name.toLowerCase())).toEqual(
      expect.arrayContaining(['from', 'to', 'subject', 'reply-to', 'in-reply-to', 'references']),
    );
  });

  it('takes the subject the agent typed over the default one', async () => {
    const conversationId = await openConversation('Other question');
    const preview = await callApi(
      stack.api.url,
      team.agents[1]!.apiKey,
      'POST',
      `/v1/conversations/${conversationId}/replies/preview`,
      {
        text: 'Hi',
        subject: 'About your parcel',
      },
    );
    expect(preview.status).toBe(200);
    expect(preview.body.subject).toBe('About your parcel');
    expect(preview.body.from.name).toBe('Bob Agent at Acme');
  });

  it('refuses what it cannot preview: an empty text, a contact without an address, others’ conversations', async () => {
    const conversationId = await openConversation('Third question');
    const path = `/v1/conversations/${conversationId}/replies/preview`;

    const empty = await callApi(stack.api.url, team.admin.apiKey, 'POST', path, { text: '  ' });
    expect(empty.status).toBe(422);
    expect(empty.contentType).toBe('application/problem+json');
    expect(empty.body.errors).toEqual([expect.objectContaining({ field: 'text' })]);

    // An agent of the account who is not on the channel: 403; another account: 404.
    const carol = await createUser(stack.db, {
      accountId: team.account.id,
      name: 'Carol',
      email: 'carol@acme.example',
      role: 'agent',
    });
    expect((await callApi(stack.api.url, carol.apiKey, 'POST', path, { text: 'Hi' })).status).toBe(403);
    const other = await createAccount(stack.db, 'Globex');
    const stranger = await createUser(stack.db, { accountId: other.id, name: 'Sam', email: 'sam@globex.example', role: 'admin' });
    const foreign = await callApi(stack.api.url, stranger.apiKey, 'POST', path, { text: 'Hi' });
    expect(foreign.status).toBe(404);
    expect(foreign.contentType).toBe('application/problem+json');

    // A3: a contact whose address is not known yet cannot be mailed, so there is nothing to preview.
    const channel = await createChannel(stack.db, { accountId: team.account.id, name: 'Web', emailAddress: 'web@acme.example' });
    const contactId = randomUUID();
    await stack.db
      .insertInto('contacts')
      .values({ id: contactId, account_id: team.account.id, email: null, name: 'Visitor' })
      .execute();
    const silentId = randomUUID();
    await stack.db
      .insertInto('conversations')
      .values({
        id: silentId,
        account_id: team.account.id,
        channel_id: channel.id,
        contact_id: contactId,
        subject: 'From the web form',
        status: 'open',
        stage: 'queued',
        updated_at: new Date(),
        labels: '[]',
      })
      .execute();
    const noAddress = await callApi(stack.api.url, team.admin.apiKey, 'POST', `/v1/conversations/${silentId}/replies/preview`, {
      text: 'Hi',
    });
    expect(noAddress.status).toBe(409);
    expect(noAddress.body.type).toMatch(/no-address$/);
  });
});

describe("a channel's own SMTP server", () => {
  let stack: TestStack;
  let ownServer: SmtpCapture;
  let port: number;

  beforeAll(async () => {
    stack = await startTestStack();
    ownServer = new SmtpCapture();
    ({ port } = await ownServer.listen());
  });

  afterAll(async () => {
    await stack?.stop();
    await ownServer?.close();
  });

  it('carries the mail of that channel; other channels keep the deployment’s server', async () => {
    const team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks for writing.' },
    });
    const plain = await createChannel(stack.db, {
      accountId: team.account.id,
      name: 'Sales',
      emailAddress: 'sales@acme.example',
      greeting: { text: 'Sales will call you.' },
    });
    await stack.db
      .updateTable('channels')
      .set({ smtp_host: '127.0.0.1', smtp_port: port, smtp_secure: false })
      .where('id', '=', team.channel.id)
      .execute();

    await postMail(stack.api.url, team.channel, parcelMail('own-smtp-1@example.com', 'Via our server'));
    await postMail(stack.api.url, plain, parcelMail('own-smtp-2@example.com', 'Via the default'));

    const greeting = await ownServer.waitFor((mail) => mail.inReplyTo === '<own-smtp-1@example.com>');
    expect(greeting.text).toContain('Thanks for writing.');
    const other = await stack.capture.waitFor((mail) => mail.inReplyTo === '<own-smtp-2@example.com>');
    expect(other.text).toContain('Sales will call you.');
    expect(stack.capture.mails.some((mail) => mail.inReplyTo === '<own-smtp-1@example.com>')).toBe(false);
    expect(ownServer.mails.some((mail) => mail.inReplyTo === '<own-smtp-2@example.com>')).toBe(false);
  });

  it('answers an agent’s reply at once while the mail server refuses it, and sends it once the server takes it', async () => {
    const team = await seedSupportTeam(stack.db, { name: 'Outage Support', emailAddress: 'outage@acme.example' });
    const posted = await postMail(stack.api.url, team.channel, parcelMail('outage-1@example.com', 'During the outage'));
    const { conversationId } = posted.body;
    await eventually(async () => {
      const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? body : undefined;
    });
    // Port 1 on loopback: nothing listens, every attempt is refused.
    await stack.db
      .updateTable('channels')
      .set({ smtp_host: '127.0.0.1', smtp_port: 1 })
      .where('id', '=', team.channel.id)
      .execute();
    const reply = await callApi(stack.api.url, team.agents[0]!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'We are on it.',
    });
    expect(reply.status).toBe(201);
    const outbox = await stack.db
      .selectFrom('outbound_messages')
      .select(['sent_at'])
      .where('id', '=', reply.body.outboundMessageId)
      .executeTakeFirstOrThrow();
    expect(outbox.sent_at).toBeNull();

    // The server comes back (here: the channel points at one that listens); the retry delivers it, once.
    await stack.db.updateTable('channels').set({ smtp_port: port }).where('id', '=', team.channel.id).execute();
    const delivered = await ownServer.waitFor((mail) => mail.messageId === reply.body.messageId, 60_000);
    expect(delivered.text).toContain('We are on it.');
    await eventually(async () => {
      const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.timeline.some((event: { type: string }) => event.type === 'agent_reply_sent') ? body : undefined;
    }, 60_000);
    expect(ownServer.mails.filter((mail) => mail.messageId === reply.body.messageId)).toHaveLength(1);
  });
});
