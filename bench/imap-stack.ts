// The IMAP side of the benchmark: a private Dovecot, a Mailroom worker that syncs mailboxes, and channels with a mailbox
// each. Everything it starts is added to the bench stack's stop().
import { randomUUID } from 'node:crypto';
import { ImapFlow } from 'imapflow';
import type { Updateable } from 'kysely';
import { startDovecot, type DovecotServer } from '../scripts/servers/dovecot.js';
import type { ChannelsTable } from '../src/db/schema.js';
import { createChannel } from '../src/db/seed.js';
import { applyMailboxSettings } from '../src/temporal/mailbox.js';
import { encryptCredential } from '../src/security/credentials.js';
import { BENCH_SECRET_KEY, startBenchWorker, type BenchStack } from './stack.js';
import { fixtureMail } from './throughput.js';

/** The IMAP worker's main queue: mailbox workflows; their syncMailbox sessions run on mailboxTaskQueue(MAILBOX_TASK_QUEUE). */
export const MAILBOX_TASK_QUEUE = 'bench-mailbox';

export interface BenchMailbox {
  channelId: string;
  /** Turns IMAP on for the channel and starts its mailbox workflow, as PUT /v1/channels/{id}/imap does. */
  enable(): Promise<void>;
  /** Runs fn with a logged-in client of its own that delivers into INBOX, as the mail server would; logs out after. */
  withDelivery<T>(fn: (client: ImapFlow) => Promise<T>): Promise<T>;
}

export interface ImapBench {
  /** For APPEND-to-signalled latency. */
  latencyMailboxes: BenchMailbox[];
  /** For the backlog drain. */
  backlogMailbox: BenchMailbox;
}

export async function startImapBench(stack: BenchStack, latencyMailboxCount: number): Promise<ImapBench> {
  const accounts = [...Array.from({ length: latencyMailboxCount }, (_, index) => `latency-${index + 1}`), 'backlog'].map(
    (user) => ({ user, password: `bench-${user}-secret` }),
  );
  const dovecot = await startDovecot({ users: accounts });
  stack.addStop(dovecot.stop);
  // Its mailbox workflows run here; the syncMailbox sessions on mailboxTaskQueue(MAILBOX_TASK_QUEUE).
  await startBenchWorker(stack, MAILBOX_TASK_QUEUE);

  const mailboxes = await Promise.all(accounts.map((account) => createMailbox(stack, dovecot, account)));
  return { latencyMailboxes: mailboxes.slice(0, -1), backlogMailbox: mailboxes.at(-1)! };
}

/** A channel of the bench's account whose IMAP settings name this Dovecot account, stored as the API stores them. */
export async function createDovecotChannel(
  stack: BenchStack,
  dovecot: DovecotServer,
  account: { user: string; password: string },
  { name, emailAddress, settings }: { name: string; emailAddress: string; settings: Updateable<ChannelsTable> },
): Promise<{ id: string }> {
  const channel = await createChannel(stack.db, { accountId: stack.accountId, name, emailAddress });
  await stack.db
    .updateTable('channels')
    .set({
      imap_host: dovecot.host,
      imap_port: dovecot.port,
      imap_tls: false,
      imap_username: account.user,
      imap_password_encrypted: encryptCredential(account.password, BENCH_SECRET_KEY),
      imap_folders: JSON.stringify(['INBOX']),
      ...settings,
    })
    .where('id', '=', channel.id)
    .execute();
  return channel;
}

/** A channel whose IMAP settings name this Dovecot account, stored as the API stores them, IMAP still off. */
async function createMailbox(
  stack: BenchStack,
  dovecot: DovecotServer,
  account: { user: string; password: string },
): Promise<BenchMailbox> {
  const name = `Bench IMAP ${account.user}`;
  // The backlog is appended before IMAP is enabled: the first sync imports it (a new mailbox otherwise starts at its end).
  const channel = await createDovecotChannel(stack, dovecot, account, {
    name,
    emailAddress: `${account.user}@acme.example`,
    settings: { imap_import_days: 1 },
  });
  return {
    channelId: channel.id,
    async enable() {
      await stack.db.updateTable('channels').set({ imap_enabled: true }).where('id', '=', channel.id).execute();
      await applyMailboxSettings(stack.temporal, { id: channel.id, name }, MAILBOX_TASK_QUEUE);
    },
    async withDelivery(fn) {
      const client = new ImapFlow({
        host: dovecot.host,
        port: dovecot.port,
        secure: false,
        auth: { user: account.user, pass: account.password },
        logger: false,
      });
      client.on('error', () => undefined); // the failing APPEND reports it
      await client.connect();
      try {
        return await fn(client);
      } finally {
        await client.logout().catch(() => client.close());
      }
    },
  };
}

if (!/^From: .*$/m.test(fixtureMail)) throw new Error('bench: the fixture mail has no From line to replace');

/** The fixture mail from a sender of its own (no two mails share a contact row), CRLF as IMAP wants; and its Message-ID. */
export function imapMail(): { raw: Buffer; messageId: string } {
  const id = randomUUID();
  const messageId = `<bench-imap-${id}@mail.example.com>`;
  const raw = fixtureMail
    .replace(/^Message-ID: .*$/m, `Message-ID: ${messageId}`)
    .replace(/^From: .*$/m, `From: "Customer ${id.slice(0, 8)}" <customer-${id}@example.com>`)
    .replace(/\r?\n/g, '\r\n');
  return { raw: Buffer.from(raw, 'latin1'), messageId };
}
