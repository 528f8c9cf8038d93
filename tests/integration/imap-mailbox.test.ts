import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startDovecot, type DovecotServer } from '../../scripts/servers/dovecot.js';
import { LOOPBACK_NETWORKS } from '../../src/config.js';
import { IMAP_FAILURE_MESSAGES, type ImapFailureReason } from '../../src/mail/imap-connection.js';
import { mailboxWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { appendMail, createFolder, folderStatus, sampleMail, withImap } from '../support/imap.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

const account = { user: 'support', password: 'imap-secret' };
// The figure; IMAP_BACKLOG=50 for a quick local run.
const BACKLOG = Number(process.env.IMAP_BACKLOG ?? 1000);

describe('an IMAP mailbox on a real Dovecot', () => {
  let stack: TestStack;
  let dovecot: DovecotServer;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  // A new mailbox starts at the end of its folders: the backlog below, appended first, comes in as a day of imported mail.
  const imapSettings = (overrides: Record<string, unknown> = {}) => ({
    enabled: true,
    host: dovecot.host,
    port: dovecot.port,
    tls: false,
    username: account.user,
    password: account.password,
    importDays: 1,
    ...overrides,
  });
  const putImap = (settings: Record<string, unknown>) =>
    callApi(stack.api.url, team.admin.apiKey, 'PUT', `/v1/channels/${team.channel.id}/imap`, settings);

  const storedIds = async () =>
    (
      await stack.db
        .selectFrom('inbound_messages')
        .select('message_id')
        .where('channel_id', '=', team.channel.id)
        .where('status', '=', 'threaded')
        .execute()
    ).map((row) => row.message_id);

  const waitForStored = (messageIds: string[], timeoutMs = 60_000) =>
    eventually(async () => {
      const stored = new Set(await storedIds());
      return messageIds.every((id) => stored.has(id)) ? stored : undefined;
    }, timeoutMs);

  const messageIdOf = (raw: string) => /^Message-ID: (.+)$/m.exec(raw)![1]!;

  beforeAll(async () => {
    [stack, dovecot] = await Promise.all([startTestStack(), startDovecot({ users: [account] })]);
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
  });

  afterAll(async () => {
    await stack?.stop();
    await dovecot?.stop();
  });

  it('refuses IMAP settings from an agent, and names missing fields', async () => {
    const asAgent = await callApi(
      stack.api.url,
      team.agents[0]!.apiKey,
      'PUT',
      `/v1/channels/${team.channel.id}/imap`,
      imapSettings(),
    );
    expect(asAgent.status).toBe(403);
    const incomplete = await putImap({ enabled: true, username: 'x' });
    expect(incomplete.status).toBe(422);
    expect(incomplete.body.errors.map((e: { field: string }) => e.field)).toContain('host');
  });

  it("tells why a connection test fails in a fixed text per reason, never the server's or the TLS library's words", async () => {
    const test = (body: Record<string, unknown>) =>
      callApi(stack.api.url, team.admin.apiKey, 'POST', `/v1/channels/${team.channel.id}/imap/test`, body);
    const failed = (reason: ImapFailureReason) => ({ ok: false, reason, message: IMAP_FAILURE_MESSAGES[reason] });
    const base = { host: dovecot.host, port: dovecot.port, tls: false, username: account.user };
    expect((await test({ ...base, password: account.password })).body).toMatchObject({ ok: true, idle: true });
    expect((await test({ ...base, password: 'wrong' })).body).toEqual(failed('auth'));
    expect((await test({ ...base, password: account.password, folders: ['INBOX', 'Nope'] })).body).toEqual({
      ...failed('folder_missing'),
      folder: 'Nope',
    });
    expect((await test({ ...base, port: 1, password: account.password })).body).toEqual(failed('refused'));
    // TLS spoken to a plain-text IMAP port: OpenSSL's "wrong version number" stays out of the answer.
    expect((await test({ ...base, tls: true, password: account.password })).body).toEqual(failed('tls'));
    expect((await test({ ...base, host: 'no-such-host.invalid', password: account.password })).body).toEqual(failed('dns'));
  });

  it('drains a backlog of 1,000 mails with none lost and none doubled', async () => {
    const backlog = Array.from({ length: BACKLOG }, (_, n) => sampleMail(n, { from: `customer${n % 50}@example.com` }));
    await withImap(dovecot, account, async (client) => {
      for (const raw of backlog) await client.append('INBOX', raw);
    });
    const saved = await putImap(imapSettings());
    expect(saved.status).toBe(200);
    expect(saved.body).toMatchObject({ enabled: true, passwordSet: true, importDays: 1 });
    expect(JSON.stringify(saved.body)).not.toContain(account.password);

    await waitForStored(backlog.map(messageIdOf), 240_000);
    const ids = await storedIds();
    expect(ids).toHaveLength(BACKLOG);
    expect(new Set(ids).size).toBe(BACKLOG);
    const rows = await stack.db
      .selectFrom('inbound_messages')
      .select('received_via')
      .where('channel_id', '=', team.channel.id)
      .execute();
    expect(rows.every((row) => row.received_via === 'imap')).toBe(true);
    const cursor = await eventually(async () => {
      const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/channels/${team.channel.id}/imap`);
      return body.cursors[0]?.lastUid === String(BACKLOG) ? body.cursors[0] : undefined;
    });
    expect(cursor.folder).toBe('INBOX');
  }, 300_000);

  it('delivers a mail appended while the mailbox idles', async () => {
    const raw = sampleMail(5001);
    await appendMail(dovecot, account, 'INBOX', raw);
    await waitForStored([messageIdOf(raw)]);
  });

  it('threads a reply into the conversation the mail it answers opened, when both arrive among others at once', async () => {
    // Several mails of a session are ingested at once; a reply waits for the mails before it, so it finds their conversation.
    const stamp = Date.now();
    const firstId = `<order-first-${stamp}@example.com>`;
    const first = [
      'From: ann@example.com',
      'To: support@acme.example',
      'Cc: bob@example.com',
      'Subject: The invoice is wrong',
      `Message-ID: ${firstId}`,
      `Date: ${new Date().toUTCString()}`,
      'Content-Type: text/plain; charset=utf-8',
      '',
      'The amount on invoice 42 is wrong.',
      '',
    ].join('\r\n');
    const others = Array.from({ length: 6 }, (_, n) => sampleMail(6100 + n, { from: `other${n}@example.com` }));
    const reply = [
      'From: bob@example.com',
      'To: support@acme.example',
      'Subject: Re: The invoice is wrong',
      `Message-ID: <order-reply-${stamp}@example.com>`,
      `In-Reply-To: ${firstId}`,
      `References: ${firstId}`,
      `Date: ${new Date().toUTCString()}`,
      'Content-Type: text/plain; charset=utf-8',
      '',
      'Invoice 43 too.',
      '',
    ].join('\r\n');
    await withImap(dovecot, account, async (client) => {
      for (const raw of [first, ...others, reply]) await client.append('INBOX', raw);
    });
    await waitForStored([first, ...others, reply].map(messageIdOf), 90_000);
    const rows = await stack.db
      .selectFrom('inbound_messages')
      .select(['message_id', 'conversation_id'])
      .where('message_id', 'in', [firstId, messageIdOf(reply)])
      .execute();
    const conversationOf = (id: string) => rows.find((row) => row.message_id === id)?.conversation_id;
    expect(conversationOf(messageIdOf(reply))).toBe(conversationOf(firstId));
    const { uidNext } = await folderStatus(dovecot, account, 'INBOX');
    await eventually(async () => {
      const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/channels/${team.channel.id}/imap`);
      return body.cursors[0]?.lastUid === String(uidNext - 1) ? true : undefined;
    });
  }, 120_000);

  it('reconnects and resumes after the server drops the connection', async () => {
    await dovecot.kickAll();
    const raw = sampleMail(5002);
    await appendMail(dovecot, account, 'INBOX', raw);
    await waitForStored([messageIdOf(raw)], 90_000);
  }, 120_000);

  it('stores one message when the same mail arrives by IMAP and by the forwarder', async () => {
    const raw = sampleMail(5003);
    const forwarded = await postMail(stack.api.url, team.channel, raw);
    expect(forwarded.status).toBe(202);
    await appendMail(dovecot, account, 'INBOX', raw);
    const marker = sampleMail(5004); // appended after it: once this is stored, the duplicate was read too
    await appendMail(dovecot, account, 'INBOX', marker);
    await waitForStored([messageIdOf(marker)]);
    const copies = await stack.db
      .selectFrom('inbound_messages')
      .select('id')
      .where('message_id', '=', messageIdOf(raw))
      .execute();
    expect(copies).toHaveLength(1);
  });

  it('reads the folder again after a UIDVALIDITY change, without duplicates', async () => {
    const before = (await storedIds()).length;
    await dovecot.resetUidValidity(account.user, 'INBOX');
    await dovecot.kickAll(); // a session only learns the new UIDVALIDITY when it opens the folder again
    const raw = sampleMail(5005);
    await appendMail(dovecot, account, 'INBOX', raw);
    await waitForStored([messageIdOf(raw)], 120_000);
    expect(await storedIds()).toHaveLength(before + 1);
  }, 180_000);

  it('quarantines a mail that is not MIME and lets the next ones through', async () => {
    const junk = 'this line is not a header\r\nand this is not a mail\r\n';
    const after = sampleMail(5006);
    await appendMail(dovecot, account, 'INBOX', junk);
    await appendMail(dovecot, account, 'INBOX', after);
    await waitForStored([messageIdOf(after)]);
    const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', '/v1/inbound-messages?status=rejected');
    expect(body.data).toEqual([
      expect.objectContaining({ receivedVia: 'imap', reason: expect.stringContaining('not an RFC 822 message') }),
    ]);
  });

  /**
   * Appends 300 mails and hands `interrupt` a function that resolves once part of them is stored,
   * then checks that every one arrives exactly once whatever `interrupt` did to the worker.
   */
  async function expectDrainToSurvive(firstMail: number, interrupt: (partlyDrained: () => Promise<void>) => Promise<void>) {
    const before = (await storedIds()).length;
    const batch = Array.from({ length: 300 }, (_, n) => sampleMail(firstMail + n, { from: `sender${n % 30}@example.com` }));
    await interrupt(async () => {
      await withImap(dovecot, account, async (client) => {
        for (const raw of batch) await client.append('INBOX', raw);
      });
      await eventually(async () => ((await storedIds()).length >= before + 20 ? true : undefined), 120_000, 20);
      expect((await storedIds()).length).toBeLessThan(before + batch.length); // really mid-drain
    });
    await waitForStored(batch.map(messageIdOf), 240_000);
    const ids = await storedIds();
    expect(ids).toHaveLength(before + batch.length);
    expect(new Set(ids).size).toBe(ids.length);
  }

  it('loses and doubles nothing when the worker is stopped mid-drain and a new one takes over', async () => {
    await expectDrainToSurvive(7000, async (partlyDrained) => {
      await partlyDrained();
      await stack.restartWorker();
    });
  }, 300_000);

  it('loses and doubles nothing when a worker process is killed (SIGKILL) mid-drain', async () => {
    // The killed session's activity times out on its heartbeat and is retried by the in-process worker.
    await expectDrainToSurvive(7500, (partlyDrained) =>
      stack.runWithoutWorker(async () => {
        // The production entry point, as its own process, so that it can really be killed.
        const worker = spawn(process.execPath, ['--import', 'tsx', 'src/worker.ts'], {
          env: {
            ...process.env,
            DATABASE_URL: stack.databaseUrl,
            TEMPORAL_ADDRESS: inject('temporalAddress'),
            TEMPORAL_TASK_QUEUE: stack.taskQueue,
            SMTP_URL: stack.smtpUrl,
            SECRET_KEY: TEST_SECRET_KEY,
            // Dovecot runs on loopback, which production refuses by default.
            ALLOWED_PRIVATE_NETWORKS: LOOPBACK_NETWORKS.join(','),
            LOG_LEVEL: 'warn',
          },
          stdio: ['ignore', 'ignore', 'inherit'],
        });
        const exited = once(worker, 'exit');
        try {
          await partlyDrained();
        } finally {
          worker.kill('SIGKILL');
          await exited;
        }
      }),
    );
  }, 300_000);

  it('marks processed mail as seen when the channel asks for it', async () => {
    expect((await putImap(imapSettings({ afterProcessing: 'mark_seen' }))).status).toBe(200);
    const raw = sampleMail(8001);
    const { uid } = await appendMail(dovecot, account, 'INBOX', raw);
    await waitForStored([messageIdOf(raw)]);
    const flags = await eventually(() =>
      withImap(dovecot, account, async (client) => {
        const lock = await client.getMailboxLock('INBOX');
        try {
          const message = await client.fetchOne(String(uid), { flags: true }, { uid: true });
          return message && message.flags?.has('\\Seen') ? message.flags : undefined;
        } finally {
          lock.release();
        }
      }),
    );
    expect(flags.has('\\Seen')).toBe(true);
  });

  it('reads every configured folder and moves processed mail to the chosen folder', async () => {
    await createFolder(dovecot, account, 'Sales');
    await createFolder(dovecot, account, 'Processed');
    const saved = await putImap(
      imapSettings({ folders: ['INBOX', 'Sales'], afterProcessing: 'move', moveToFolder: 'Processed' }),
    );
    expect(saved.status).toBe(200);
    const inSales = sampleMail(8101);
    await appendMail(dovecot, account, 'Sales', inSales);
    const inInbox = sampleMail(8102); // wakes the IDLE on the first folder; Sales is drained on the same wake
    await appendMail(dovecot, account, 'INBOX', inInbox);
    await waitForStored([messageIdOf(inSales), messageIdOf(inInbox)]);
    const moved = await eventually(async () => {
      const status = await folderStatus(dovecot, account, 'Processed');
      return status.messages >= 2 ? status : undefined;
    });
    expect(moved.messages).toBe(2);
    expect((await folderStatus(dovecot, account, 'Sales')).messages).toBe(0);
  });

  it('stops syncing when IMAP is disabled', async () => {
    const saved = await putImap(imapSettings({ enabled: false }));
    expect(saved.body.enabled).toBe(false);
    const handle = stack.temporal.workflow.getHandle(mailboxWorkflowId(team.channel.id));
    await eventually(async () => ((await handle.describe()).status.name === 'COMPLETED' ? true : undefined), 60_000);
  }, 90_000);
});

describe('an IMAP server without IDLE', () => {
  let stack: TestStack;
  let dovecot: DovecotServer;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    [stack, dovecot] = await Promise.all([startTestStack(), startDovecot({ users: [account], idle: false })]);
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
  });

  afterAll(async () => {
    await stack?.stop();
    await dovecot?.stop();
  });

  it('is polled at the channel interval, and its mail arrives', async () => {
    const settings = {
      enabled: true,
      host: dovecot.host,
      port: dovecot.port,
      tls: false,
      username: account.user,
      password: account.password,
    };
    const test = await callApi(stack.api.url, team.admin.apiKey, 'POST', `/v1/channels/${team.channel.id}/imap/test`, settings);
    expect(test.body).toMatchObject({ ok: true, idle: false });
    const saved = await callApi(stack.api.url, team.admin.apiKey, 'PUT', `/v1/channels/${team.channel.id}/imap`, {
      ...settings,
      pollIntervalSeconds: 5,
    });
    expect(saved.status).toBe(200);
    // Only once the first session ended and the poll timer runs is the mail appended: the next poll must fetch it.
    const mailbox = stack.temporal.workflow.getHandle(mailboxWorkflowId(team.channel.id));
    await eventually(async () =>
      (await mailbox.fetchHistory()).events!.some((event) => event.timerStartedEventAttributes) ? true : undefined,
    );
    const raw = sampleMail(9001);
    await appendMail(dovecot, account, 'INBOX', raw);
    const messageId = /^Message-ID: (.+)$/m.exec(raw)![1]!;
    await eventually(
      () =>
        stack.db
          .selectFrom('inbound_messages')
          .select('id')
          .where('message_id', '=', messageId)
          .where('signalled_at', 'is not', null)
          .executeTakeFirst(),
      60_000,
    );
  }, 90_000);
});
