// The figures a cost model needs that the load of bench/greeting-load.ts does not give: what PostgreSQL stores per byte of
// attachment (the raw mail keeps it base64-encoded, the attachments table decoded), and what one idle IMAP session
// (a channel's mailbox workflow and its IMAP connection in IDLE, on a real Dovecot) costs a worker in RSS and CPU.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDovecot } from '../scripts/servers/dovecot.js';
import { applyMailboxSettings } from '../src/temporal/mailbox.js';
import { loadWorkerEnv, startLoadWorker, type LoadBench, type LoadWorker } from './greeting-load.js';
import { createDovecotChannel } from './imap-stack.js';
import { databaseUsage, usageDelta } from './pg-usage.js';
import type { BenchStack } from './stack.js';
import { fixtureMail, forwardedMail, measure } from './throughput.js';

export interface AttachmentFigures {
  mails: number;
  /** Bytes of each mail's one attachment (random, so incompressible, as PDFs and images mostly are). */
  attachmentBytes: number;
  /** Bytes of each whole mail as posted. */
  mailBytes: number;
  /** Growth of the two tables that hold mail bytes for the attachment mails, less as many plain mails' (the attachments' share). */
  rawBytes: number;
  decodedBytes: number;
  /** Attachment rows stored with their content: one a mail, or the attachment was not taken apart. */
  storedAttachments: number;
}

/** A worker with no IMAP session, with the first half of the mailboxes' sessions in IDLE, then with all. */
export interface ImapSessionFigures {
  mailboxes: number;
  /** Sessions in the second half, whose memory the differences between half and all are. */
  added: number;
  /** Each after a GC of the main thread, where the sessions (activities) live. */
  memory: Record<'none' | 'half' | 'all', { rss: number; mainThread: number }>;
  /** Activities running on the mailbox queue once all are in IDLE: one per session. */
  sessionsRunning: number;
  /** Worker CPU seconds over `idleSeconds`, with none, half and all of the sessions in IDLE. */
  idleSeconds: number;
  idleCpu: Record<'none' | 'half' | 'all', number>;
}

const ATTACHMENT_CONCURRENCY = 4;

/**
 * Posts `mails` mails with one attachment each and as many plain ones through the stack's API (on the queue no worker
 * polls: only storage is measured), and returns the tables' growth of the first less the second's.
 */
export async function measureAttachmentStorage(
  stack: BenchStack,
  { mails, attachmentBytes }: { mails: number; attachmentBytes: number },
): Promise<AttachmentFigures> {
  const plain = forwardedMail(stack);
  const before = await databaseUsage(stack.db);
  const plainPosts = await measure(mails, ATTACHMENT_CONCURRENCY, plain);
  const middle = await databaseUsage(stack.db);
  let mailBytes = 0;
  const withAttachment = async () => {
    const raw = mailWithAttachment(attachmentBytes);
    mailBytes = raw.length;
    const response = await fetch(`${stack.apiUrl}/v1/channels/${stack.channel.id}/inbound`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.channel.forwarderSecret}`, 'content-type': 'message/rfc822' },
      body: raw,
    });
    const body = await response.text();
    if (response.status !== 202) throw new Error(`HTTP ${response.status}: ${body}`);
  };
  const attachmentPosts = await measure(mails, ATTACHMENT_CONCURRENCY, withAttachment);
  const after = await databaseUsage(stack.db);
  for (const posts of [plainPosts, attachmentPosts]) {
    if (posts.failures > 0) throw new Error(`${posts.failures} of ${mails} posts failed: ${posts.firstFailure}`);
  }
  // Only bytes: the row counters of this process's own pool reach the statistics late. Plain mails' growth subtracted.
  const growth = (table: string) =>
    (usageDelta(middle, after)[table]?.bytes ?? 0) - (usageDelta(before, middle)[table]?.bytes ?? 0);
  const stored = await stack.db
    .selectFrom('attachments')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('size_bytes', '=', attachmentBytes)
    .where('content', 'is not', null)
    .executeTakeFirstOrThrow();
  return {
    mails,
    attachmentBytes,
    mailBytes,
    rawBytes: growth('inbound_messages'),
    decodedBytes: growth('attachments'),
    storedAttachments: Number(stored.n),
  };
}

/** The fixture mail as multipart/mixed with one attachment of `bytes` random bytes (base64, 76 characters a line). */
function mailWithAttachment(bytes: number): Buffer {
  const mail = fixtureMail.replaceAll('\r\n', '\n'); // a checkout may have turned its line ends into CRLF
  const headerEnd = mail.indexOf('\n\n');
  // The fixture's headers but its Content-* ones, which the multipart's replace.
  const headers = mail
    .slice(0, headerEnd)
    .split('\n')
    .filter((line) => !line.startsWith('Content-'))
    .join('\n')
    .replace(/^Message-ID: .*$/m, `Message-ID: <bench-attachment-${randomBytes(8).toString('hex')}@mail.example.com>`);
  const body = mail.slice(headerEnd + 2);
  const base64 = randomBytes(bytes).toString('base64').replace(/.{76}/g, '$&\n');
  return Buffer.from(
    `${headers}\nContent-Type: multipart/mixed; boundary="bench-boundary"\n\n` +
      `--bench-boundary\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n${body}\n` +
      `--bench-boundary\nContent-Type: application/pdf; name="invoice.pdf"\nContent-Disposition: attachment; filename="invoice.pdf"\n` +
      `Content-Transfer-Encoding: base64\n\n${base64}\n--bench-boundary--\n`,
    'latin1',
  );
}

const SESSIONS_TIMEOUT_MS = 120_000;

/**
 * `mailboxes` channels with IMAP on a Dovecot of their own, on a fresh worker process: its RSS and its CPU time over
 * `idleSeconds` with the first half of the sessions in IDLE (the session records its success just before it idles), and
 * again with all. The second half's difference leaves out what the first session of a process costs once.
 */
export async function measureIdleImapSessions(
  stack: BenchStack,
  bench: LoadBench,
  { mailboxes, idleSeconds }: { mailboxes: number; idleSeconds: number },
): Promise<ImapSessionFigures> {
  const accounts = Array.from({ length: mailboxes }, (_, index) => ({
    user: `idle-${index + 1}`,
    password: `bench-idle-${index + 1}-secret`,
  }));
  const dovecot = await startDovecot({ users: accounts });
  stack.addStop(dovecot.stop);
  const taskQueue = `bench-idle-imap-${randomBytes(4).toString('hex')}`;
  const channels: Array<{ id: string; name: string }> = [];
  for (const account of accounts) {
    const name = `Bench idle IMAP ${account.user} ${taskQueue}`;
    const channel = await createDovecotChannel(stack, dovecot, account, {
      name,
      emailAddress: `${account.user}-${taskQueue}@acme.example`,
      settings: { imap_enabled: true },
    });
    channels.push({ id: channel.id, name });
  }

  const worker = await startLoadWorker(stack, loadWorkerEnv(stack, bench, taskQueue));
  const half = Math.floor(mailboxes / 2);
  try {
    await sleep(2000); // pollers up
    const idling = async (enabled: Array<{ id: string; name: string }>) => {
      await Promise.all(enabled.map((channel) => applyMailboxSettings(stack.temporal, channel, taskQueue)));
      if (enabled.length > 0) await untilSessionsIdle(stack, worker, channels.slice(0, channels.indexOf(enabled.at(-1)!) + 1));
      await sleep(3000); // every session in IDLE, the start-up garbage collectable
      const sample = await worker.sample(true);
      await sleep(idleSeconds * 1000);
      return {
        memory: { rss: sample.rss, mainThread: sample.heapUsed + sample.external },
        cpu: (await worker.sample(false)).cpuSeconds - sample.cpuSeconds,
      };
    };
    const none = await idling([]);
    const first = await idling(channels.slice(0, half));
    const all = await idling(channels.slice(half));
    return {
      mailboxes,
      added: mailboxes - half,
      memory: { none: none.memory, half: first.memory, all: all.memory },
      sessionsRunning: (await worker.sample(false)).mailboxSessions,
      idleSeconds,
      idleCpu: { none: none.cpu, half: first.cpu, all: all.cpu },
    };
  } finally {
    await worker.stop();
  }
}

/** Until every channel's session has synced and the worker runs as many sessions. */
async function untilSessionsIdle(stack: BenchStack, worker: LoadWorker, channels: Array<{ id: string }>): Promise<void> {
  const deadline = Date.now() + SESSIONS_TIMEOUT_MS;
  for (;;) {
    const synced = await stack.db
      .selectFrom('channel_health')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('path', '=', 'imap')
      .where('last_success_at', 'is not', null)
      .where(
        'channel_id',
        'in',
        channels.map((channel) => channel.id),
      )
      .executeTakeFirstOrThrow();
    const sessions = (await worker.sample(false)).mailboxSessions;
    if (Number(synced.n) === channels.length && sessions === channels.length) return;
    if (Date.now() > deadline) {
      throw new Error(
        `only ${synced.n} of ${channels.length} mailboxes synced (${sessions} sessions) within ${SESSIONS_TIMEOUT_MS / 1000} s`,
      );
    }
    await sleep(250);
  }
}
