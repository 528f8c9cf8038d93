import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostfix, type RunningPostfix } from '../../scripts/servers/postfix.js';
import { freePort } from '../../scripts/servers/tools.js';
import type { SmtpReceiver } from '../../src/receiver/smtp-receiver.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { deliver, MAX_INBOUND_BYTES, refusal, startReceiver } from '../support/receiver.js';
import { seedSupportTeam, startTestStack, TEST_INBOUND_DOMAIN, type TestStack } from '../support/stack.js';

// The SMTP receiver as a sending MTA meets it: nodemailer delivering over SMTP on loopback (and a raw socket for what
// no well-behaved MTA does), into the real ingest, PostgreSQL and Temporal of the test stack.

type Team = Awaited<ReturnType<typeof seedSupportTeam>>;

/** A client that speaks SMTP line by line, for what MTAs never do (stall, flood). */
class RawSmtpClient {
  private buffer = '';
  private waiting: (() => void) | undefined;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (data: string) => {
      this.buffer += data;
      this.waiting?.();
    });
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => undefined);
  }

  static async open(port: number): Promise<RawSmtpClient> {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = new RawSmtpClient(socket);
    await client.reply();
    return client;
  }

  /** The next whole reply (its last line is `NNN text`). */
  async reply(): Promise<string> {
    for (;;) {
      const lines = this.buffer.split('\r\n');
      const last = lines.findIndex((line) => /^\d{3} /.test(line));
      if (last !== -1) {
        const reply = lines.slice(0, last + 1).join('\n');
        this.buffer = lines.slice(last + 1).join('\r\n');
        return reply;
      }
      if (this.socket.destroyed) throw new Error(`connection closed; read: ${this.buffer}`);
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
        this.socket.once('close', resolve);
      });
    }
  }

  async command(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  write(text: string) {
    this.socket.write(text);
  }

  close() {
    this.socket.destroy();
  }
}

describe('SMTP receiver', () => {
  let stack: TestStack;
  let team: Team;
  let other: Team;
  let port: number;
  let receiver: SmtpReceiver;
  const forwarding = `support@acme.${TEST_INBOUND_DOMAIN}`;
  const otherForwarding = `help@globex.${TEST_INBOUND_DOMAIN}`;

  async function conversationOf(messageId: string, channelId = team.channel.id) {
    return eventually(async () => {
      const row = await stack.db
        .selectFrom('inbound_messages')
        .select(['id', 'conversation_id', 'received_via', 'signalled_at', 'status'])
        .where('channel_id', '=', channelId)
        .where('message_id', '=', `<${messageId}>`)
        .executeTakeFirst();
      return row?.conversation_id && row.signalled_at ? row : undefined;
    });
  }

  async function rowsOf(messageId: string) {
    return stack.db
      .selectFrom('inbound_messages')
      .select(['id', 'channel_id', 'status', 'conversation_id', 'signalled_at', 'received_via'])
      .where('message_id', '=', `<${messageId}>`)
      .execute();
  }

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks, we got your mail.' },
    });
    other = await seedSupportTeam(stack.db, { name: 'Globex help', emailAddress: 'help@globex.example' });
    const set = await callApi(stack.api.url, team.admin.apiKey, 'PUT', `/v1/channels/${team.channel.id}/forwarding-address`, {
      username: 'support',
      subdomain: 'acme',
    });
    expect(set).toMatchObject({ status: 200, body: { forwardingAddress: forwarding } });
    await callApi(stack.api.url, other.admin.apiKey, 'PUT', `/v1/channels/${other.channel.id}/forwarding-address`, {
      username: 'help',
      subdomain: 'globex',
    });
    ({ receiver, port } = await startReceiver(stack));
  });

  afterAll(async () => {
    await receiver?.close();
    await stack?.stop();
  });

  it('turns a mail to the forwarding address into a greeted conversation, answering 250 once it is stored', async () => {
    const info = await deliver(
      port,
      { from: 'ann@example.com', to: [forwarding] },
      customerMail({ messageId: 'smtp-1@example.com', to: 'support@acme.example' }),
    );
    expect(info.response).toMatch(/^250 2\.0\.0 OK: stored as [0-9a-f-]{36}$/);
    const row = await conversationOf('smtp-1@example.com');
    expect(row.received_via).toBe('smtp');
    const greeting = await stack.capture.waitFor((mail) => mail.envelope.to.includes('ann@example.com'));
    expect(greeting.text).toContain('Thanks, we got your mail.');
  });

  it('threads a reply sent to the reply-token address into its conversation, at the channel domain and at the forwarding address', async () => {
    const { conversation_id: conversationId } = await conversationOf('smtp-1@example.com');
    const { reply_token: token } = await stack.db
      .selectFrom('conversations')
      .select('reply_token')
      .where('id', '=', conversationId!)
      .executeTakeFirstOrThrow();
    // The channel's own domain pointing its MX here: the token names the conversation.
    await deliver(
      port,
      { from: 'ann@example.com', to: [`support+${token}@acme.example`] },
      customerMail({ messageId: 'smtp-reply-1@example.com', to: `support+${token}@acme.example`, subject: 'More' }),
    );
    expect((await conversationOf('smtp-reply-1@example.com')).conversation_id).toBe(conversationId);
    // Forwarded by the team's own server to the forwarding address with the token.
    await deliver(
      port,
      { from: 'ann@example.com', to: [`support+${token}@acme.${TEST_INBOUND_DOMAIN}`] },
      customerMail({ messageId: 'smtp-reply-2@example.com', to: `support+${token}@acme.${TEST_INBOUND_DOMAIN}` }),
    );
    expect((await conversationOf('smtp-reply-2@example.com')).conversation_id).toBe(conversationId);
    // A token that names no conversation of that address is nobody here.
    const unknown = await refusal(
      deliver(
        port,
        { from: 'ann@example.com', to: [`support+${'0'.repeat(32)}@acme.example`] },
        customerMail({ messageId: 'x@x' }),
      ),
    );
    expect(unknown).toMatchObject({ responseCode: 550, command: 'RCPT TO' });
  });

  it('keeps one row for one mail, whether it came through the forwarder endpoint or SMTP', async () => {
    const raw = customerMail({ messageId: 'both-ways@example.com', from: '<bea@example.com>' });
    expect((await postMail(stack.api.url, team.channel, raw)).status).toBe(202);
    await deliver(port, { from: 'bea@example.com', to: [forwarding] }, raw);
    const rows = await rowsOf('both-ways@example.com');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ received_via: 'forwarder', status: 'threaded' });
  });

  it('refuses an unknown recipient with 550 at RCPT and goes on for the good ones; a mail for two channels is ingested once per channel', async () => {
    const info = await deliver(
      port,
      {
        from: 'cid@example.com',
        to: [`nobody@acme.${TEST_INBOUND_DOMAIN}`, forwarding, otherForwarding, 'support@acme.example'],
      },
      customerMail({ messageId: 'two-channels@example.com', from: '<cid@example.com>' }),
    );
    expect(info.rejected).toEqual([`nobody@acme.${TEST_INBOUND_DOMAIN}`, 'support@acme.example']);
    expect(info.rejectedErrors?.map((error) => (error as { responseCode?: number }).responseCode)).toEqual([550, 550]);
    expect(info.accepted).toEqual([forwarding, otherForwarding]);
    await conversationOf('two-channels@example.com', team.channel.id);
    await conversationOf('two-channels@example.com', other.channel.id);
    expect(await rowsOf('two-channels@example.com')).toHaveLength(2);
  });

  it('announces SIZE, refuses a mail over the channel limit with 552 at DATA (or at RCPT when its size is declared)', async () => {
    const client = await RawSmtpClient.open(port);
    const ehlo = await client.command('EHLO mta.example');
    client.close();
    expect(ehlo).toMatch(new RegExp(`^250[- ]SIZE ${MAX_INBOUND_BYTES}$`, 'm'));
    expect(ehlo).not.toContain('STARTTLS');
    expect(ehlo).not.toContain('AUTH');

    const patched = await callApi(stack.api.url, other.admin.apiKey, 'PATCH', `/v1/channels/${other.channel.id}`, {
      limits: { maxInboundBytes: 4000 },
    });
    expect(patched.status).toBe(200);
    const big = customerMail({ messageId: 'big@example.com', text: 'x'.repeat(6000) });
    const atData = await refusal(deliver(port, { from: 'dan@example.com', to: [otherForwarding] }, big));
    expect(atData).toMatchObject({ responseCode: 552, command: 'DATA' });
    expect(atData.response).toContain('up to 4000');
    expect(await rowsOf('big@example.com')).toHaveLength(0);

    const declared = await RawSmtpClient.open(port);
    await declared.command('EHLO mta.example');
    expect(await declared.command('MAIL FROM:<dan@example.com> SIZE=6000')).toMatch(/^250/);
    expect(await declared.command(`RCPT TO:<${otherForwarding}>`)).toMatch(/^552 5\.3\.4 .*up to 4000 bytes/);
    expect(await declared.command(`RCPT TO:<${forwarding}>`)).toMatch(/^250/);
    declared.close();
  });

  it('answers 451 while Temporal is away with the mail stored; delivered again later it makes one conversation', async () => {
    const temporal = new Client({ connection: Connection.lazy({ address: `127.0.0.1:${await freePort()}` }) });
    const away = await startReceiver(stack, { temporal });
    try {
      const raw = customerMail({ messageId: 'outage@example.com', from: '<eve@example.com>' });
      const answer = await refusal(deliver(away.port, { from: 'eve@example.com', to: [forwarding] }, raw));
      expect(answer).toMatchObject({ responseCode: 451, command: 'DATA' });
      expect(await rowsOf('outage@example.com')).toMatchObject([{ status: 'threaded', signalled_at: null }]);

      await deliver(port, { from: 'eve@example.com', to: [forwarding] }, raw);
      const row = await conversationOf('outage@example.com');
      expect(await rowsOf('outage@example.com')).toHaveLength(1);
      await stack.capture.waitFor((mail) => mail.envelope.to.includes('eve@example.com'));
      const conversations = await stack.db
        .selectFrom('conversations')
        .select('id')
        .where('channel_id', '=', team.channel.id)
        .where('id', '=', row.conversation_id!)
        .execute();
      expect(conversations).toHaveLength(1);
    } finally {
      await away.receiver.close();
      await temporal.connection.close();
    }
  });

  it('offers STARTTLS with the configured certificate, and a sender requiring TLS delivers over it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'smtp-receiver-tls-'));
    try {
      const keyFile = join(dir, 'key.pem');
      const certFile = join(dir, 'cert.pem');
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-keyout',
          keyFile,
          '-out',
          certFile,
          '-days',
          '1',
          '-subj',
          '/CN=localhost',
          '-addext',
          'subjectAltName=DNS:localhost',
        ],
        { stdio: 'ignore' },
      );
      const cert = readFileSync(certFile);
      const secured = await startReceiver(stack, { tls: { key: readFileSync(keyFile), cert } });
      try {
        const client = await RawSmtpClient.open(secured.port);
        expect(await client.command('EHLO mta.example')).toContain('250-STARTTLS');
        client.close();
        const info = await deliver(
          secured.port,
          { from: 'fay@example.com', to: [forwarding] },
          customerMail({ messageId: 'over-tls@example.com', from: '<fay@example.com>' }),
          { ca: cert },
        );
        expect(info.response).toMatch(/^250/);
        await conversationOf('over-tls@example.com');
      } finally {
        await secured.receiver.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("lists Gmail's forwarding confirmation for the admins: 250, no conversation, nothing sent; a forged one stays customer mail", async () => {
    const link = 'https://mail-settings.google.com/mail/vf-%5BANGjdJ8x%5D-Zk1Tq0aB';
    const confirmation = customerMail({
      messageId: 'gmail-confirmation@mail.gmail.com',
      from: 'Gmail Team <forwarding-noreply@google.com>',
      to: forwarding,
      subject: '(#123456789) Gmail Forwarding Confirmation - Receive Mail from gus@gmail.com',
      text: [
        `gus@gmail.com has requested to automatically forward mail to your email address ${forwarding}.`,
        'Confirmation code: 123456789',
        '',
        link,
      ].join('\r\n'),
    });
    const info = await deliver(port, { from: 'forwarding-noreply@google.com', to: [forwarding] }, confirmation);
    expect(info.response).toMatch(/^250/);
    // Delivered again (the sender retried): 250 again, still one.
    await deliver(port, { from: 'forwarding-noreply@google.com', to: [forwarding] }, confirmation);

    const listed = await callApi(
      stack.api.url,
      team.admin.apiKey,
      'GET',
      `/v1/channels/${team.channel.id}/forwarding-confirmations`,
    );
    expect(listed.status).toBe(200);
    const [row] = await rowsOf('gmail-confirmation@mail.gmail.com');
    expect(listed.body).toEqual({
      data: [
        {
          id: expect.any(String),
          channelId: team.channel.id,
          provider: 'gmail',
          sender: 'forwarding-noreply@google.com',
          subject: '(#123456789) Gmail Forwarding Confirmation - Receive Mail from gus@gmail.com',
          requestedBy: 'gus@gmail.com',
          confirmationCode: '123456789',
          confirmationUrl: link,
          inboundMessageId: row!.id,
          receivedAt: expect.any(String),
        },
      ],
      nextCursor: null,
    });
    expect(row).toMatchObject({ status: 'rejected', conversation_id: null });
    const google = await stack.db
      .selectFrom('contacts')
      .select('id')
      .where('email', '=', 'forwarding-noreply@google.com')
      .execute();
    expect(google).toEqual([]);
    const agent = await callApi(
      stack.api.url,
      team.agents[0]!.apiKey,
      'GET',
      `/v1/channels/${team.channel.id}/forwarding-confirmations`,
    );
    expect(agent.status).toBe(403);

    // The shape from someone else is customer mail: agents see it.
    await deliver(
      port,
      { from: 'hal@example.com', to: [forwarding] },
      customerMail({
        messageId: 'forged-confirmation@example.com',
        from: '<hal@example.com>',
        subject: '(#123456789) Gmail Forwarding Confirmation - Receive Mail from hal@example.com',
        text: `Confirmation code: 123456789\r\n${link}`,
      }),
    );
    await conversationOf('forged-confirmation@example.com');
    // The same mail through the forwarder endpoint is the same confirmation.
    const posted = await postMail(stack.api.url, team.channel, confirmation);
    expect(posted).toMatchObject({
      status: 200,
      body: { inboundMessageId: row!.id, forwardingConfirmationId: listed.body.data[0].id },
    });
    await stack.capture.waitFor((mail) => mail.envelope.to.includes('hal@example.com'));
    expect(stack.capture.mails.filter((mail) => mail.envelope.to.includes('forwarding-noreply@google.com'))).toEqual([]);
  });

  it('never greets its own forwarding address: a mail from it is kept, the greeting suppressed', async () => {
    await deliver(
      port,
      { from: forwarding, to: [forwarding] },
      customerMail({ messageId: 'from-ourselves@example.com', from: `<support+loop@acme.${TEST_INBOUND_DOMAIN}>` }),
    );
    const { conversation_id: conversationId } = await conversationOf('from-ourselves@example.com');
    const reason = await eventually(async () => {
      const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      const events = body.timeline as Array<{ type: string; data: { reason?: string } }>;
      if (events.some((event) => event.type === 'greeting_sent')) return 'sent';
      return events.find((event) => event.type === 'automatic_mail_suppressed')?.data.reason;
    });
    expect(reason).toBe('the recipient is the channel itself');
  });

  describe('hostile senders', () => {
    it('takes at most the configured recipients in one mail (452 beyond), and closes on too many unknown ones (421)', async () => {
      const to = Array.from({ length: 7 }, (_, index) => `support+r${index}@acme.${TEST_INBOUND_DOMAIN}`);
      const info = await deliver(port, { from: 'ivy@example.com', to }, customerMail({ messageId: 'many-rcpts@example.com' }));
      expect(info.accepted).toEqual(to.slice(0, 5));
      expect(info.rejectedErrors?.map((error) => (error as { responseCode?: number }).responseCode)).toEqual([452, 452]);
      expect(await rowsOf('many-rcpts@example.com')).toHaveLength(1);

      const harvester = await RawSmtpClient.open(port);
      await harvester.command('EHLO harvester.example');
      await harvester.command('MAIL FROM:<h@harvester.example>');
      expect(await harvester.command(`RCPT TO:<a@acme.${TEST_INBOUND_DOMAIN}>`)).toMatch(/^550 5\.1\.1/);
      expect(await harvester.command(`RCPT TO:<b@acme.${TEST_INBOUND_DOMAIN}>`)).toMatch(/^550 5\.1\.1/);
      expect(await harvester.command(`RCPT TO:<c@acme.${TEST_INBOUND_DOMAIN}>`)).toMatch(/^421 /);
      await harvester.closed;
    });

    it('refuses a mail far over the limit with 552 without keeping it, and takes a mail with a huge header line as it takes any mail', async () => {
      const huge = customerMail({ messageId: 'huge@example.com', text: 'y'.repeat(3 * MAX_INBOUND_BYTES) });
      expect(await refusal(deliver(port, { from: 'jon@example.com', to: [forwarding] }, huge))).toMatchObject({
        responseCode: 552,
      });
      expect(await rowsOf('huge@example.com')).toHaveLength(0);

      const longHeader = customerMail({
        messageId: 'long-header@example.com',
        from: '<kim@example.com>',
        headers: [`X-Padding: ${'z'.repeat(200_000)}`],
      });
      const answer = await deliver(port, { from: 'kim@example.com', to: [forwarding] }, longHeader).then(
        (info) => info.response,
        (error: { response: string }) => error.response,
      );
      // Stored either way: as a conversation (250) or kept with its reason for the admins (554).
      expect(answer).toMatch(/^(250|554 5\.6\.0)/);
      expect(await rowsOf('long-header@example.com')).toHaveLength(1);
    });

    it('lets others deliver while a client stalls in the middle of DATA, and disconnects the staller after its timeout', async () => {
      const patient = await startReceiver(stack, { socketTimeoutMs: 1_500 });
      try {
        const staller = await RawSmtpClient.open(patient.port);
        await staller.command('EHLO slow.example');
        await staller.command('MAIL FROM:<slow@slow.example>');
        await staller.command(`RCPT TO:<${forwarding}>`);
        expect(await staller.command('DATA')).toMatch(/^354/);
        staller.write('From: <slow@slow.example>\r\nMessage-ID: <stalled@slow.example>\r\nSubject: half\r\n');

        const info = await deliver(
          patient.port,
          { from: 'lea@example.com', to: [forwarding] },
          customerMail({ messageId: 'while-stalled@example.com', from: '<lea@example.com>' }),
        );
        expect(info.response).toMatch(/^250/);
        await staller.closed;
        expect(await rowsOf('stalled@slow.example')).toHaveLength(0);
      } finally {
        await patient.receiver.close();
      }
    });

    it('answers 451 when the mails arriving at once hold more than their budget, and takes mail again once they are gone', async () => {
      const tight = await startReceiver(stack, { maxBufferedBytes: 4_000 });
      try {
        const hog = await RawSmtpClient.open(tight.port);
        await hog.command('EHLO hog.example');
        await hog.command('MAIL FROM:<hog@hog.example>');
        await hog.command(`RCPT TO:<${forwarding}>`);
        expect(await hog.command('DATA')).toMatch(/^354/);
        hog.write(`From: <hog@hog.example>\r\nMessage-ID: <hog@hog.example>\r\nX-Fill: ${'h'.repeat(3_000)}\r\n`);
        // Once the receiver holds the hog's bytes (it reads them as they come), a second mail does not fit.
        let attempt = 0;
        const busy = await eventually(async () => {
          attempt += 1;
          const mail = customerMail({ messageId: `budget-${attempt}@example.com`, text: 'b'.repeat(1_500) });
          const answer = await deliver(tight.port, { from: 'ola@example.com', to: [forwarding] }, mail).then(
            () => undefined,
            (error: { responseCode: number; response: string }) => error,
          );
          return answer?.responseCode === 451 ? answer : undefined;
        });
        expect(busy.response).toMatch(/^451 4\.3\.2 /);
        expect(await rowsOf(`budget-${attempt}@example.com`)).toHaveLength(0);

        hog.close();
        await hog.closed;
        const info = await eventually(async () =>
          deliver(
            tight.port,
            { from: 'ola@example.com', to: [forwarding] },
            customerMail({ messageId: 'after-the-hog@example.com', text: 'b'.repeat(1_500) }),
          ).catch(() => undefined),
        );
        expect(info.response).toMatch(/^250/);
      } finally {
        await tight.receiver.close();
      }
    });
  });
  // Debian's Postfix as the team's mail server: it relays what it takes to the receiver, and queues and retries what
  // the receiver answers 4xx. Postfix's master runs as root only.
  describe.skipIf(userInfo().uid !== 0)('relayed by Postfix', () => {
    let postfix: RunningPostfix;

    beforeAll(async () => {
      postfix = await startPostfix({ relayPort: port });
    });

    afterAll(async () => {
      await postfix?.stop();
    });

    async function logOf(line: (text: string) => boolean) {
      return eventually(async () => readFileSync(postfix.logFile, 'utf8').split('\n').find(line));
    }

    it('delivers what Postfix relays into a conversation, and Postfix bounces an unknown recipient the receiver refused', async () => {
      await deliver(
        postfix.port,
        { from: 'max@example.com', to: [forwarding] },
        customerMail({ messageId: 'via-postfix@example.com', from: '<max@example.com>' }),
      );
      const row = await conversationOf('via-postfix@example.com');
      expect(row.received_via).toBe('smtp');
      await stack.capture.waitFor((mail) => mail.envelope.to.includes('max@example.com'));

      await deliver(
        postfix.port,
        { from: 'max@example.com', to: [`nobody@acme.${TEST_INBOUND_DOMAIN}`] },
        customerMail({ messageId: 'via-postfix-unknown@example.com', from: '<max@example.com>' }),
      );
      const bounced = await logOf((line) => line.includes(`to=<nobody@acme.${TEST_INBOUND_DOMAIN}>`) && line.includes('status='));
      expect(bounced).toContain('status=bounced');
      expect(bounced).toContain('550 5.1.1');
      expect(await rowsOf('via-postfix-unknown@example.com')).toHaveLength(0);
    });

    it('keeps a mail in the Postfix queue while Temporal is away (451, the mail stored), and it arrives once when it is back', async () => {
      const temporal = new Client({ connection: Connection.lazy({ address: `127.0.0.1:${await freePort()}` }) });
      const away = await startReceiver(stack, { temporal });
      try {
        await postfix.relayTo(away.port);
        await deliver(
          postfix.port,
          { from: 'noa@example.com', to: [forwarding] },
          customerMail({ messageId: 'postfix-outage@example.com', from: '<noa@example.com>' }),
        );
        // Postfix notes the delay reason while the mail is still in its active queue, then moves it to deferred.
        const deferred = await eventually(async () =>
          (await postfix.queue()).find(
            (mail) =>
              mail.queueName === 'deferred' && mail.recipients.some((recipient) => recipient.delayReason?.includes('451 4.3.0')),
          ),
        );
        expect(deferred).toMatchObject({ queueName: 'deferred', sender: 'noa@example.com' });
        expect(await rowsOf('postfix-outage@example.com')).toMatchObject([{ status: 'threaded', signalled_at: null }]);

        // Its next try goes to the receiver whose Temporal is there; flushed, as the queue's own retry comes later.
        await postfix.relayTo(port);
        await eventually(
          async () => {
            await postfix.flush();
            return (await rowsOf('postfix-outage@example.com'))[0]?.signalled_at ?? undefined;
          },
          30_000,
          1_000,
        );
        await conversationOf('postfix-outage@example.com');
        await eventually(async () => ((await postfix.queue()).length === 0 ? true : undefined));
        expect(await rowsOf('postfix-outage@example.com')).toHaveLength(1);
        await stack.capture.waitFor((mail) => mail.envelope.to.includes('noa@example.com'));
      } finally {
        await postfix.relayTo(port);
        await away.receiver.close();
        await temporal.connection.close();
      }
    });
  });
});
