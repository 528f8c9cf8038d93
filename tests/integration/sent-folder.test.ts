import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDovecot, type DovecotServer } from '../../scripts/servers/dovecot.js';
import { NO_SENT_FOLDER } from '../../src/activities/sent-folder.js';
import { createChannel } from '../../src/db/seed.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { appendMail, createFolder, withImap, type ImapAccount, type ImapServerAddress } from '../support/imap.js';
import { customerMail } from '../support/mail.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

// Issue 11, part 3: the shared mailbox shows the team's answers. Mail Mailroom sends lands in the mailbox's
// Sent folder (the bytes sent, \Seen, once), and a reply written in the mailbox itself is recorded in its
// conversation, never sent again. Real Dovecot, real SMTP capture, real worker.

const account: ImapAccount = { user: 'support', password: 'imap-secret' };

interface FolderMail {
  uid: number;
  flags: string[];
  messageId: string | undefined;
  raw: string;
}

/** Every mail in the folder as another mail client reads it. */
async function folderMails(server: ImapServerAddress, folder: string): Promise<FolderMail[]> {
  return withImap(server, account, async (client) => {
    const lock = await client.getMailboxLock(folder);
    try {
      if (!client.mailbox || client.mailbox.exists === 0) return [];
      const mails: FolderMail[] = [];
      for await (const message of client.fetch('1:*', { uid: true, flags: true, envelope: true, source: true })) {
        mails.push({
          uid: message.uid,
          flags: [...(message.flags ?? [])],
          messageId: message.envelope?.messageId,
          raw: message.source?.toString() ?? '',
        });
      }
      return mails;
    } finally {
      lock.release();
    }
  });
}

/** A mail as a person writes it in their mail client From the support mailbox, and the client files it in Sent. */
function mailboxReply(input: { messageId: string; from?: string; to: string; inReplyTo: string; text?: string }): string {
  return [
    `From: ${input.from ?? '"Carla from Acme" <support@acme.example>'}`,
    `To: ${input.to}`,
    'Subject: Re: A question',
    `Message-ID: <${input.messageId}>`,
    `In-Reply-To: ${input.inReplyTo}`,
    `References: ${input.inReplyTo}`,
    `Date: ${new Date().toUTCString()}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    input.text ?? 'Hello Ann, we sent the invoice again. Carla',
    '',
  ].join('\r\n');
}

describe('the shared mailbox shows the team’s answers', () => {
  let stack: TestStack;
  // One server that marks a folder \Sent (as providers set mailboxes up), one without any.
  let dovecot: DovecotServer;
  let bare: DovecotServer;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let other: { id: string; forwarderSecret: string };
  // A conversation from before the mailbox was connected, with a reply written in the mailbox back then.
  let earlier: { conversationId: string; customerMessageId: string; oldReplyId: string };

  const imapSettings = (server: DovecotServer, overrides: Record<string, unknown> = {}) => ({
    enabled: true,
    host: server.host,
    port: server.port,
    tls: false,
    username: account.user,
    password: account.password,
    // IDLE watches INBOX: the Sent folder is looked at this often.
    pollIntervalSeconds: 5,
    ...overrides,
  });
  const putImap = (channelId: string, settings: Record<string, unknown>) =>
    callApi(stack.api.url, team.admin.apiKey, 'PUT', `/v1/channels/${channelId}/imap`, settings);
  const conversation = async (id: string) =>
    (await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${id}`)).body;
  const outbound = async (id: string, kind: string) =>
    (await conversation(id)).messages.filter((m: { kind: string }) => m.kind === kind);

  /** A customer writes in (by the forwarder); returns the conversation once its greeting went out. */
  async function customerWritesIn(channel: { id: string; forwarderSecret: string }, from = 'ann@example.com') {
    const customerMessageId = `${randomUUID()}@example.com`;
    const posted = await postMail(stack.api.url, channel, customerMail({ messageId: customerMessageId, from }));
    expect(posted.status).toBe(202);
    const conversationId: string = posted.body.conversationId;
    const greeting = await stack.capture.waitFor(
      (mail) => mail.envelope.to.includes(from) && mail.inReplyTo === `<${customerMessageId}>`,
    );
    // Recorded sent (whether it is to be copied is decided then).
    await eventually(async () => {
      const [row] = await outbound(conversationId, 'greeting');
      return row?.deliveryStatus === 'sent' ? row : undefined;
    });
    return { conversationId, customerMessageId: `<${customerMessageId}>`, greeting };
  }

  /** Waits until the folder holds a mail with each Message-ID, and returns the folder. */
  const waitInFolder = (server: ImapServerAddress, folder: string, messageIds: string[]) =>
    eventually(async () => {
      const mails = await folderMails(server, folder);
      return messageIds.every((id) => mails.some((mail) => mail.messageId === id)) ? mails : undefined;
    }, 60_000);

  const sentCopyOf = async (conversationId: string, messageId: string) =>
    (await conversation(conversationId)).messages.find((m: { messageId: string }) => m.messageId === messageId)?.sentCopy;

  beforeAll(async () => {
    [stack, dovecot, bare] = await Promise.all([
      startTestStack(),
      startDovecot({ users: [account], sentFolder: 'Sent' }),
      startDovecot({ users: [account] }),
    ]);
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks for writing, we will answer soon.' },
      csat: { delaySeconds: 1 },
    });
    other = await createChannel(stack.db, {
      accountId: team.account.id,
      name: 'Acme Billing',
      emailAddress: 'billing@acme.example',
      greeting: { text: 'Billing got your mail.' },
    });
    await stack.db.insertInto('channel_agents').values({ channel_id: other.id, user_id: team.agents[0]!.id }).execute();

    // Before the mailbox is connected: nothing is copied, and the Sent folder's history is never read as replies.
    const before = await customerWritesIn(team.channel, 'old-customer@example.com');
    const oldReplyId = `${randomUUID()}@acme.example`;
    await appendMail(
      dovecot,
      account,
      'Sent',
      mailboxReply({ messageId: oldReplyId, to: 'old-customer@example.com', inReplyTo: before.customerMessageId }),
      ['\\Seen'],
    );
    earlier = { conversationId: before.conversationId, customerMessageId: before.customerMessageId, oldReplyId };

    expect((await putImap(team.channel.id, imapSettings(dovecot))).status).toBe(200);
    // The first look at the Sent folder puts its cursor at its end.
    await eventually(async () => {
      const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/channels/${team.channel.id}/imap`);
      return body.sentFolderCursor ?? undefined;
    }, 60_000);
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    await dovecot?.stop();
    await bare?.stop();
  });

  it('appends the greeting, an agent’s reply and the survey to the Sent folder: the bytes sent, \\Seen, one copy each', async () => {
    const { conversationId, greeting } = await customerWritesIn(team.channel);
    const detail = await eventually(async () => {
      const body = await conversation(conversationId);
      return body.stage === 'assigned' ? body : undefined;
    });
    const assignee = team.agents.find((agent) => agent.id === detail.assigneeId)!;
    const path = `/v1/conversations/${conversationId}`;
    const replied = await callApi(stack.api.url, assignee.apiKey, 'POST', `${path}/replies`, { text: 'Here is your invoice.' });
    expect(replied.status).toBe(201);
    const reply = await stack.capture.waitFor((mail) => mail.messageId === replied.body.messageId);
    expect((await callApi(stack.api.url, assignee.apiKey, 'POST', `${path}/resolve`)).status).toBe(200);
    const survey = await stack.capture.waitFor(
      (mail) => mail.envelope.to.includes('ann@example.com') && mail.subject.startsWith('How did we do?'),
      60_000,
    );

    const sent = [greeting, reply, survey];
    const folder = await waitInFolder(
      dovecot,
      'Sent',
      sent.map((mail) => mail.messageId!),
    );
    for (const mail of sent) {
      const copies = folder.filter((copy) => copy.messageId === mail.messageId);
      expect(copies).toHaveLength(1);
      expect(copies[0]!.flags).toContain('\\Seen');
      // The very bytes the SMTP server took (its DATA ends with the line break before the final dot).
      expect(copies[0]!.raw.trimEnd()).toBe(mail.raw.trimEnd());
    }
    // The API says so, for each of them.
    for (const mail of sent) {
      const copy = await eventually(async () => {
        const found = await sentCopyOf(conversationId, mail.messageId!);
        return found?.status === 'appended' ? found : undefined;
      });
      expect(copy).toMatchObject({ status: 'appended', folder: 'Sent', error: null });
      expect(Date.parse(copy.at)).not.toBeNaN();
    }
    // The conversation from before the mailbox was connected got no copies.
    expect((await folderMails(dovecot, 'Sent')).filter((mail) => mail.raw.includes('old-customer@example.com'))).toHaveLength(1);
    expect((await outbound(earlier.conversationId, 'greeting'))[0].sentCopy).toBeNull();
  }, 120_000);

  it('appends one copy even when the attempt fails after the APPEND and before it is recorded', async () => {
    const { conversationId } = await customerWritesIn(team.channel, 'bert@example.com');
    await eventually(async () => ((await conversation(conversationId)).stage === 'assigned' ? true : undefined));
    // The database refuses the first record of this conversation's reply copy, as a crash right after the APPEND would
    // lose it: the session fails and is retried. (A sequence counts across rolled-back transactions.)
    await sql`create sequence sent_copy_record_attempts`.execute(stack.db);
    await sql
      .raw(
        `create function refuse_first_sent_copy_record() returns trigger language plpgsql as $$
         begin
           if nextval('sent_copy_record_attempts') = 1 then raise exception 'lost before it was recorded'; end if;
           return new;
         end $$`,
      )
      .execute(stack.db);
    await sql
      .raw(
        `create trigger refuse_first_sent_copy_record before update on outbound_messages for each row
         when (old.sent_copy_status = 'pending' and new.sent_copy_status = 'appended' and new.kind = 'reply'
               and new.conversation_id = '${conversationId}')
         execute function refuse_first_sent_copy_record()`,
      )
      .execute(stack.db);
    const replied = await callApi(stack.api.url, team.admin.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'We are on it.',
    });
    expect(replied.status).toBe(201);
    const messageId: string = replied.body.messageId;

    const copy = await eventually(async () => {
      const found = await sentCopyOf(conversationId, messageId);
      return found?.status === 'appended' ? found : undefined;
    }, 90_000);
    expect(copy.folder).toBe('Sent');
    const attempts = await sql<{ last_value: string }>`select last_value from sent_copy_record_attempts`.execute(stack.db);
    expect(Number(attempts.rows[0]!.last_value)).toBeGreaterThanOrEqual(2);
    expect((await folderMails(dovecot, 'Sent')).filter((mail) => mail.messageId === messageId)).toHaveLength(1);
  }, 120_000);

  it('copies only the kinds the channel chose', async () => {
    expect((await putImap(team.channel.id, imapSettings(dovecot, { sentCopyKinds: ['reply'] }))).status).toBe(200);
    const { conversationId, greeting } = await customerWritesIn(team.channel, 'cleo@example.com');
    await eventually(async () => ((await conversation(conversationId)).stage === 'assigned' ? true : undefined));
    const replied = await callApi(stack.api.url, team.admin.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'Only this one is copied.',
    });
    expect(replied.status).toBe(201);
    await waitInFolder(dovecot, 'Sent', [replied.body.messageId]);
    // The greeting went out before the reply and was not copied.
    expect((await folderMails(dovecot, 'Sent')).some((mail) => mail.messageId === greeting.messageId)).toBe(false);
    expect(await sentCopyOf(conversationId, greeting.messageId!)).toBeNull();
    expect((await putImap(team.channel.id, imapSettings(dovecot))).status).toBe(200);
  }, 120_000);

  it('says so when the mailbox has no Sent folder, sends the mail all the same, and copies it once a folder is named', async () => {
    expect((await putImap(other.id, imapSettings(bare))).status).toBe(200);
    const { conversationId, greeting } = await customerWritesIn(other, 'dora@example.com');
    const failed = await eventually(async () => {
      const copy = await sentCopyOf(conversationId, greeting.messageId!);
      return copy?.status === 'failed' ? copy : undefined;
    }, 60_000);
    expect(failed.error).toBe(NO_SENT_FOLDER);
    const detail = await conversation(conversationId);
    expect(detail.messages.find((m: { kind: string }) => m.kind === 'greeting').deliveryStatus).toBe('sent');
    expect(detail.timeline).toContainEqual(
      expect.objectContaining({ type: 'sent_copy_failed', data: expect.objectContaining({ reason: NO_SENT_FOLDER }) }),
    );
    await eventually(async () => ((await conversation(conversationId)).stage === 'assigned' ? true : undefined));

    // A folder of another name, set in the settings: the copy that failed is made there.
    await createFolder(bare, account, 'Team Sent');
    const saved = await putImap(other.id, imapSettings(bare, { sentFolder: 'Team Sent' }));
    expect(saved.status).toBe(200);
    expect(saved.body.sentFolder).toBe('Team Sent');
    const folder = await waitInFolder(bare, 'Team Sent', [greeting.messageId!]);
    expect(folder.find((mail) => mail.messageId === greeting.messageId)!.flags).toContain('\\Seen');
    expect(await sentCopyOf(conversationId, greeting.messageId!)).toMatchObject({ status: 'appended', folder: 'Team Sent' });
  }, 120_000);

  it('refuses Sent-folder settings it cannot use', async () => {
    const bad = await putImap(team.channel.id, imapSettings(dovecot, { sentCopyKinds: ['mailbox_reply'], sentFolder: '' }));
    expect(bad.status).toBe(422);
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['sentCopyKinds.0', 'sentFolder']);
  });

  it('records a reply written in the mailbox in its conversation, and sends nothing', async () => {
    const { conversationId, customerMessageId } = await customerWritesIn(team.channel, 'erin@example.com');
    const mailsBefore = stack.capture.mails.length;
    const replyId = `${randomUUID()}@acme.example`;
    await appendMail(
      dovecot,
      account,
      'Sent',
      mailboxReply({ messageId: replyId, to: '"Erin" <erin@example.com>', inReplyTo: customerMessageId }),
      ['\\Seen'],
    );

    const [recorded] = await eventually(async () => {
      const found = await outbound(conversationId, 'mailbox_reply');
      return found.length > 0 ? found : undefined;
    }, 60_000);
    expect(recorded).toMatchObject({
      direction: 'outbound',
      messageId: `<${replyId}>`,
      from: 'support@acme.example',
      to: 'erin@example.com',
      deliveryStatus: 'sent',
      sentCopy: { status: 'found', folder: 'Sent' },
    });
    expect(recorded.text).toContain('we sent the invoice again');
    const detail = await conversation(conversationId);
    expect(detail.timeline).toContainEqual(
      expect.objectContaining({
        type: 'answered_from_mailbox',
        data: expect.objectContaining({ from: 'support@acme.example', fromName: 'Carla from Acme' }),
      }),
    );
    // Never sent, nobody greeted: the capture got nothing since.
    expect(stack.capture.mails.slice(mailsBefore)).toEqual([]);
    // The Sent folder's history from before the mailbox was connected stays history.
    expect(await outbound(earlier.conversationId, 'mailbox_reply')).toEqual([]);
    // Mailroom's own copies in the Sent folder are not taken for replies written there.
    const ownKinds = (await conversation(earlier.conversationId)).messages.map((m: { kind: string }) => m.kind);
    expect(ownKinds.filter((kind: string) => kind === 'mailbox_reply')).toEqual([]);
  }, 120_000);

  it('sends while the IMAP server is down, and copies the mail to the Sent folder once it is back', async () => {
    const { conversationId } = await customerWritesIn(team.channel, 'hana@example.com');
    await eventually(async () => ((await conversation(conversationId)).stage === 'assigned' ? true : undefined));
    await dovecot.stop();
    try {
      const replied = await callApi(stack.api.url, team.admin.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
        text: 'Sent while the mailbox is away.',
      });
      expect(replied.status).toBe(201);
      await stack.capture.waitFor((mail) => mail.messageId === replied.body.messageId);
      const reply = await eventually(async () => {
        const found = (await outbound(conversationId, 'reply'))[0];
        return found?.deliveryStatus === 'sent' ? found : undefined;
      });
      expect(reply.sentCopy).toMatchObject({ status: 'pending', folder: null, at: null });
      // The conversation goes on: the agent resolves it meanwhile.
      const resolved = await callApi(stack.api.url, team.admin.apiKey, 'POST', `/v1/conversations/${conversationId}/resolve`);
      expect(resolved.status).toBe(200);
    } finally {
      await dovecot.start();
    }
    const messageId = (await outbound(conversationId, 'reply'))[0].messageId;
    await eventually(async () => {
      const copy = await sentCopyOf(conversationId, messageId);
      return copy?.status === 'appended' ? copy : undefined;
    }, 180_000);
    expect((await folderMails(dovecot, 'Sent')).filter((mail) => mail.messageId === messageId)).toHaveLength(1);
  }, 240_000);

  it('records a reply over the channel’s size limit by its headers, saying its text was not read', async () => {
    const { conversationId, customerMessageId } = await customerWritesIn(team.channel, 'ivy@example.com');
    await stack.db.updateTable('channels').set({ max_inbound_bytes: 4096 }).where('id', '=', team.channel.id).execute();
    try {
      const replyId = `${randomUUID()}@acme.example`;
      const large = mailboxReply({
        messageId: replyId,
        to: 'ivy@example.com',
        inReplyTo: customerMessageId,
        text: 'A long answer. '.repeat(1_000),
      });
      await appendMail(dovecot, account, 'Sent', large, ['\\Seen']);
      const [recorded] = await eventually(async () => {
        const found = await outbound(conversationId, 'mailbox_reply');
        return found.length > 0 ? found : undefined;
      }, 60_000);
      expect(recorded.messageId).toBe(`<${replyId}>`);
      expect(recorded.text).toMatch(/^\(not read: \d+ bytes, over the channel's size limit\)$/);
    } finally {
      await stack.db
        .updateTable('channels')
        .set({ max_inbound_bytes: 25 * 1024 * 1024 })
        .where('id', '=', team.channel.id)
        .execute();
    }
  }, 120_000);

  it('records no Sent mail from someone else, into another channel, or to someone outside the conversation', async () => {
    const { conversationId, customerMessageId } = await customerWritesIn(team.channel, 'fay@example.com');
    const billing = await customerWritesIn(other, 'gus@example.com');
    const conversationsBefore = await stack.db
      .selectFrom('conversations')
      .select(sql<number>`count(*)::int`.as('n'))
      .executeTakeFirstOrThrow();
    const hostile = {
      // Another sender's mail in the folder (a shared Sent folder, a filter rule), answering the conversation.
      fromSomeoneElse: mailboxReply({
        messageId: `${randomUUID()}@elsewhere.example`,
        from: 'mallory@elsewhere.example',
        to: 'fay@example.com',
        inReplyTo: customerMessageId,
      }),
      // The channel's address, answering a conversation of another channel.
      intoAnotherChannel: mailboxReply({
        messageId: `${randomUUID()}@acme.example`,
        to: 'gus@example.com',
        inReplyTo: billing.customerMessageId,
      }),
      // The channel's address and a reference to Fay's conversation, but written to a stranger: not an answer to it.
      toAStranger: mailboxReply({
        messageId: `${randomUUID()}@acme.example`,
        to: 'stranger@elsewhere.example',
        inReplyTo: customerMessageId,
      }),
      // Reusing the Message-ID of a mail Mailroom sent in another channel: never recorded twice, and no failure either.
      ourOwnMessageId: mailboxReply({
        messageId: billing.greeting.messageId!.slice(1, -1),
        to: 'fay@example.com',
        inReplyTo: customerMessageId,
      }),
    };
    for (const raw of Object.values(hostile)) await appendMail(dovecot, account, 'Sent', raw, ['\\Seen']);
    // Appended after them: once it is recorded, the Sent folder was read past them.
    const markerId = `${randomUUID()}@acme.example`;
    await appendMail(
      dovecot,
      account,
      'Sent',
      mailboxReply({ messageId: markerId, to: 'fay@example.com', inReplyTo: customerMessageId }),
      ['\\Seen'],
    );
    await eventually(async () => {
      const found = await outbound(conversationId, 'mailbox_reply');
      return found.length > 0 ? found : undefined;
    }, 60_000);

    const recorded = await stack.db
      .selectFrom('outbound_messages')
      .select(['message_id', 'conversation_id', 'kind'])
      .where('kind', '=', 'mailbox_reply')
      .where('conversation_id', 'in', [conversationId, billing.conversationId])
      .execute();
    expect(recorded).toEqual([{ message_id: `<${markerId}>`, conversation_id: conversationId, kind: 'mailbox_reply' }]);
    // The greeting whose id was reused is still the one greeting, sent by Mailroom.
    expect(await outbound(billing.conversationId, 'greeting')).toHaveLength(1);
    const conversationsAfter = await stack.db
      .selectFrom('conversations')
      .select(sql<number>`count(*)::int`.as('n'))
      .executeTakeFirstOrThrow();
    expect(conversationsAfter.n).toBe(conversationsBefore.n);
  }, 120_000);
});
