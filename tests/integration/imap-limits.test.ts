import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDovecot, type DovecotServer } from '../../scripts/servers/dovecot.js';
import { createChannel } from '../../src/db/seed.js';
import type { Ingest } from '../../src/ingest/ingest.js';
import { ParserBusyError } from '../../src/mail/parse.js';
import { mailboxTaskQueue, mailboxWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually } from '../support/http.js';
import { appendMail, createFolder, deleteMails, sampleMail } from '../support/imap.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

// Issue 9, resource bounds on IMAP ingest and the first sync: a mail over the channel's limit is quarantined by
// the size the server gives, without its download, and fetched by UID when reprocessed; one heartbeat clock per
// session; sessions on a task queue of their own; a new mailbox starts at the end of its folders unless the admin
// imports its last days; a busy parser pool is waited for.

const LIMIT = 64 * 1024;
// Longer than the mailbox session's heartbeat timeout (15 s), and than that plus the first retry's 5 s.
const SLOW_INGEST_MS = 30_000;
const DAY_MS = 24 * 60 * 60_000;

const messageIdOf = (raw: string) => /^Message-ID: (.+)$/m.exec(raw)![1]!;

/** A sampleMail(n) whose body is `bytes` long. */
function largeMail(n: number, bytes: number): string {
  const line = 'All the details of the attached report, line by line.\r\n';
  return sampleMail(n).replace('Body of test message', line.repeat(Math.ceil(bytes / line.length)));
}

describe('IMAP resource bounds and the first sync, on a real Dovecot', () => {
  let stack: TestStack;
  let dovecot: DovecotServer;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  /** Message-IDs of every mail the worker handed to the ingest, in order. */
  const ingested: string[] = [];
  /** Message-IDs whose ingest answers ParserBusyError this many more times. */
  const parserBusyFor = new Map<string, number>();

  /** The worker's ingest, recording each mail it is handed; mail with an "X-Test: slow" header takes SLOW_INGEST_MS. */
  const recordingIngest = (ingest: Ingest): Ingest => ({
    ...ingest,
    async ingestRawMail(channel, raw, options) {
      const text = raw.toString('latin1');
      const messageId = /^Message-ID: (.+)$/m.exec(text)?.[1]?.trim() ?? '';
      ingested.push(messageId);
      if (/^X-Test: slow$/m.test(text)) await sleep(SLOW_INGEST_MS);
      const busy = parserBusyFor.get(messageId) ?? 0;
      if (busy > 0) {
        parserBusyFor.set(messageId, busy - 1);
        throw new ParserBusyError('64 mails wait for a parser thread');
      }
      return ingest.ingestRawMail(channel, raw, options);
    },
  });

  const admin = (method: string, path: string, body?: unknown) => callApi(stack.api.url, team.admin.apiKey, method, path, body);

  /** A channel with a Dovecot account of its own, its IMAP settings saved through the API (import days as given). */
  async function mailboxChannel(user: string, settings: Record<string, unknown> = {}) {
    const account = { user, password: `${user}-secret` };
    await dovecot.addUser(account.user, account.password);
    const channel = await createChannel(stack.db, {
      accountId: team.account.id,
      name: `Mailbox ${user}`,
      emailAddress: `${user}@acme.example`,
    });
    const put = (overrides: Record<string, unknown> = {}) =>
      admin('PUT', `/v1/channels/${channel.id}/imap`, {
        enabled: true,
        host: dovecot.host,
        port: dovecot.port,
        tls: false,
        username: account.user,
        password: account.password,
        ...settings,
        ...overrides,
      });
    /** Resolves once the first sync has placed the folder's cursor. */
    const cursorOf = (folder = 'INBOX') =>
      eventually(async () => {
        const { body } = await admin('GET', `/v1/channels/${channel.id}/imap`);
        return body.cursors.find((cursor: { folder: string }) => cursor.folder === folder);
      });
    return { account, channel, put, cursorOf };
  }

  const storedRow = (channelId: string, messageId: string) =>
    stack.db
      .selectFrom('inbound_messages')
      .selectAll()
      .where('channel_id', '=', channelId)
      .where('message_id', '=', messageId)
      .executeTakeFirst();

  /** The stored row once its conversation workflow has been signalled. */
  const signalled = (channelId: string, messageId: string, timeoutMs = 60_000) =>
    eventually(async () => {
      const row = await storedRow(channelId, messageId);
      return row?.signalled_at ? row : undefined;
    }, timeoutMs);

  const setLimit = (channelId: string, bytes: number) =>
    stack.db.updateTable('channels').set({ max_inbound_bytes: bytes }).where('id', '=', channelId).execute();

  /** The mailbox workflow's current session, as the Temporal server describes it. */
  const currentSession = async (channelId: string) =>
    (await stack.temporal.workflow.getHandle(mailboxWorkflowId(channelId)).describe()).raw.pendingActivities?.[0];

  beforeAll(async () => {
    [stack, dovecot] = await Promise.all([startTestStack({ workerIngest: recordingIngest }), startDovecot()]);
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
  });

  afterAll(async () => {
    await stack?.stop();
    await dovecot?.stop();
  });

  describe('a mail over the size limit', () => {
    let mailbox: Awaited<ReturnType<typeof mailboxChannel>>;
    const big = largeMail(1, 300 * 1024);
    let bigUid: number;

    beforeAll(async () => {
      mailbox = await mailboxChannel('limits');
      await setLimit(mailbox.channel.id, LIMIT);
      expect((await mailbox.put()).status).toBe(200);
      await mailbox.cursorOf('INBOX');
    });

    it('is quarantined by its RFC822.SIZE without being downloaded, and the mail after it is ingested', async () => {
      const after = sampleMail(2);
      const appended = await appendMail(dovecot, mailbox.account, 'INBOX', big);
      bigUid = appended.uid;
      await appendMail(dovecot, mailbox.account, 'INBOX', after);
      await signalled(mailbox.channel.id, messageIdOf(after));

      const size = Buffer.byteLength(big);
      const row = await storedRow(mailbox.channel.id, messageIdOf(big));
      expect(row).toMatchObject({
        status: 'rejected',
        raw: null,
        size_bytes: size,
        rejection_reason: `too large: ${size} bytes, the channel accepts ${LIMIT}; not downloaded`,
        received_via: 'imap',
        source_folder: 'INBOX',
        source_uid_validity: String(appended.uidValidity),
        source_uid: String(bigUid),
      });
      expect(ingested).not.toContain(messageIdOf(big));
      const { body } = await admin('GET', `/v1/inbound-messages?status=rejected&channelId=${mailbox.channel.id}`);
      expect(body.data).toEqual([expect.objectContaining({ id: row!.id, downloaded: false, sizeBytes: size })]);

      // Dovecot logs what each session sent when it ends: none of them sent the mail's bytes.
      const log = join(dovecot.dir, 'dovecot.log');
      const sessionsBefore = (readFileSync(log, 'utf8').match(/imap\(limits\).*Disconnected/g) ?? []).length;
      await dovecot.kickAll();
      const sent = await eventually(async () => {
        const lines = readFileSync(log, 'utf8')
          .split('\n')
          .filter((line) => /imap\(limits\).*Disconnected.* out=\d+/.test(line));
        return lines.length > sessionsBefore ? lines.map((line) => Number(/ out=(\d+)/.exec(line)![1])) : undefined;
      });
      expect(Math.max(...sent)).toBeLessThan(size / 10);
    });

    it('says it is still too large when reprocessed under the same limit', async () => {
      const row = await storedRow(mailbox.channel.id, messageIdOf(big));
      const answer = await admin('POST', `/v1/inbound-messages/${row!.id}/reprocess`);
      expect(answer).toMatchObject({ status: 409, body: { title: 'Still cannot be processed' } });
      expect(answer.body.detail).toMatch(/too large: \d+ bytes, the channel accepts 65536; raise the channel's limit first/);
    });

    it('is downloaded by UID and ingested when reprocessed after the limit is raised', async () => {
      await setLimit(mailbox.channel.id, 1024 * 1024);
      const row = await storedRow(mailbox.channel.id, messageIdOf(big));
      const answer = await admin('POST', `/v1/inbound-messages/${row!.id}/reprocess`);
      expect(answer.status).toBe(202);
      expect(answer.body).toMatchObject({ inboundMessageId: row!.id, status: 'received', folder: 'INBOX', uid: bigUid });
      expect(answer.body.message).toMatch(/downloads UID \d+ from INBOX/);

      const done = await signalled(mailbox.channel.id, messageIdOf(big));
      expect(done).toMatchObject({ id: row!.id, status: 'threaded', size_bytes: Buffer.byteLength(big) });
      expect(Buffer.from(done.raw!).toString()).toBe(big);
      expect(ingested.filter((id) => id === messageIdOf(big))).toHaveLength(1);
      const again = await admin('POST', `/v1/inbound-messages/${row!.id}/reprocess`);
      expect(again).toMatchObject({ status: 409, body: { title: 'Not in quarantine' } });
    });

    it('returns to the quarantine with the reason when reprocessed after it left the folder', async () => {
      await setLimit(mailbox.channel.id, LIMIT);
      const gone = largeMail(3, 100 * 1024);
      const { uid } = await appendMail(dovecot, mailbox.account, 'INBOX', gone);
      const row = await eventually(() => storedRow(mailbox.channel.id, messageIdOf(gone)));
      await deleteMails(dovecot, mailbox.account, 'INBOX', [uid]);
      await setLimit(mailbox.channel.id, 1024 * 1024);
      expect((await admin('POST', `/v1/inbound-messages/${row.id}/reprocess`)).status).toBe(202);
      const back = await eventually(async () => {
        const current = await storedRow(mailbox.channel.id, messageIdOf(gone));
        return current?.status === 'rejected' ? current : undefined;
      });
      expect(back).toMatchObject({
        raw: null,
        rejection_reason: `not downloaded: UID ${uid} is no longer in INBOX (deleted or moved)`,
      });
    });
  });

  it('starts a new mailbox at the end of its folders: mail that was there is not read, new mail is', async () => {
    const mailbox = await mailboxChannel('fresh');
    const old = [sampleMail(11), sampleMail(12), sampleMail(13)];
    for (const raw of old) await appendMail(dovecot, mailbox.account, 'INBOX', raw);
    const saved = await mailbox.put();
    expect(saved.body).toMatchObject({ importDays: 0 });
    const cursor = await mailbox.cursorOf('INBOX');
    expect(cursor).toMatchObject({ lastUid: '3', importedBefore: expect.any(String) });

    const fresh = sampleMail(14);
    await appendMail(dovecot, mailbox.account, 'INBOX', fresh);
    expect(await signalled(mailbox.channel.id, messageIdOf(fresh))).toMatchObject({ imported: false });

    // A folder added later starts at its end too.
    await createFolder(dovecot, mailbox.account, 'Later');
    const oldInLater = sampleMail(15);
    await appendMail(dovecot, mailbox.account, 'Later', oldInLater);
    expect((await mailbox.put({ folders: ['INBOX', 'Later'] })).status).toBe(200);
    await mailbox.cursorOf('Later');
    const newInLater = sampleMail(16);
    await appendMail(dovecot, mailbox.account, 'Later', newInLater);
    await appendMail(dovecot, mailbox.account, 'INBOX', sampleMail(17)); // wakes the IDLE on INBOX; Later is drained with it
    await signalled(mailbox.channel.id, messageIdOf(newInLater));

    const stored = await stack.db
      .selectFrom('inbound_messages')
      .select('message_id')
      .where('channel_id', '=', mailbox.channel.id)
      .execute();
    for (const raw of [...old, oldInLater]) expect(stored.map((row) => row.message_id)).not.toContain(messageIdOf(raw));
  });

  it('imports the mail of the last N days, marked imported, and nothing older', async () => {
    const mailbox = await mailboxChannel('history');
    const daysAgo = (days: number) => new Date(Date.now() - days * DAY_MS);
    const history = [
      { raw: sampleMail(21), arrived: daysAgo(40), imported: undefined },
      { raw: sampleMail(22), arrived: daysAgo(10), imported: undefined },
      { raw: sampleMail(23), arrived: daysAgo(3), imported: true },
      { raw: sampleMail(24), arrived: daysAgo(1 / 24), imported: true },
    ];
    for (const mail of history) await appendMail(dovecot, mailbox.account, 'INBOX', mail.raw, [], mail.arrived);
    expect((await mailbox.put({ importDays: 7 })).body).toMatchObject({ importDays: 7 });
    const fresh = sampleMail(25);
    await mailbox.cursorOf('INBOX');
    await appendMail(dovecot, mailbox.account, 'INBOX', fresh);
    expect(await signalled(mailbox.channel.id, messageIdOf(fresh))).toMatchObject({ imported: false });

    for (const mail of history) {
      const row = await storedRow(mailbox.channel.id, messageIdOf(mail.raw));
      if (mail.imported) expect(row, `${mail.arrived.toISOString()}`).toMatchObject({ imported: true, status: 'threaded' });
      else expect(row, `${mail.arrived.toISOString()}`).toBeUndefined();
    }
  });

  it('keeps a session alive on its heartbeat clock while one mail takes longer than the heartbeat timeout', async () => {
    const mailbox = await mailboxChannel('slow');
    expect((await mailbox.put()).status).toBe(200);
    await mailbox.cursorOf('INBOX');
    const slow = sampleMail(31).replace('Content-Type:', 'X-Test: slow\r\nContent-Type:');
    await appendMail(dovecot, mailbox.account, 'INBOX', slow);
    await signalled(mailbox.channel.id, messageIdOf(slow), SLOW_INGEST_MS + 60_000);
    // A lapsed heartbeat would have failed the session, and the next one would have fetched the same mail again.
    expect(ingested.filter((id) => id === messageIdOf(slow))).toHaveLength(1);
    expect(await currentSession(mailbox.channel.id)).toMatchObject({ attempt: 1 });
  }, 120_000);

  it('waits while the parser pool is busy and ingests the same mail again, in the same session', async () => {
    const mailbox = await mailboxChannel('busy');
    expect((await mailbox.put()).status).toBe(200);
    await mailbox.cursorOf('INBOX');
    const mail = sampleMail(41);
    parserBusyFor.set(messageIdOf(mail), 3);
    const after = sampleMail(42);
    await appendMail(dovecot, mailbox.account, 'INBOX', mail);
    await appendMail(dovecot, mailbox.account, 'INBOX', after);
    await signalled(mailbox.channel.id, messageIdOf(after));
    expect(await storedRow(mailbox.channel.id, messageIdOf(mail))).toMatchObject({ status: 'threaded' });
    expect(ingested.filter((id) => id === messageIdOf(mail))).toHaveLength(4);
    expect(await currentSession(mailbox.channel.id)).toMatchObject({ attempt: 1 });
  });

  it('runs the mailbox sessions on the mailbox task queue, apart from the conversations', async () => {
    const mailbox = await mailboxChannel('queues');
    expect((await mailbox.put()).status).toBe(200);
    await mailbox.cursorOf('INBOX');
    const { events } = await stack.temporal.workflow.getHandle(mailboxWorkflowId(mailbox.channel.id)).fetchHistory();
    const scheduled = events!.flatMap((event) => event.activityTaskScheduledEventAttributes ?? []);
    expect(scheduled.length).toBeGreaterThan(0);
    for (const session of scheduled) {
      expect(session.activityType?.name).toBe('syncMailbox');
      expect(session.taskQueue?.name).toBe(mailboxTaskQueue(stack.taskQueue));
    }
    expect(stack.worker.mailbox.options.taskQueue).toBe(mailboxTaskQueue(stack.taskQueue));
    // Mailbox sessions and mailbox-export imports: the long-running mail work, never in the conversations' slots.
    expect([...stack.worker.mailbox.options.activities.keys()].sort()).toEqual(['importMailboxExport', 'syncMailbox']);
  });
});
