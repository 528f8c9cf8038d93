/** Small IMAP helpers for tests, acting on a test server the way a mail user or another mail client would. */
import { ImapFlow } from 'imapflow';

export interface ImapServerAddress {
  host: string;
  port: number;
}

export interface ImapAccount {
  user: string;
  password: string;
}

/** Runs fn with a logged-in client of its own, and logs out afterwards. */
export async function withImap<T>(
  server: ImapServerAddress,
  account: ImapAccount,
  fn: (client: ImapFlow) => Promise<T>,
): Promise<T> {
  const client = connectImap(server, account);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.logout().catch(() => client.close());
  }
}

/** A client that is not connected yet, for tests that watch a connection (e.g. for 'close'). */
export function connectImap(server: ImapServerAddress, account: ImapAccount): ImapFlow {
  const client = new ImapFlow({
    host: server.host,
    port: server.port,
    secure: false,
    auth: { user: account.user, pass: account.password },
    logger: false,
  });
  client.on('error', () => undefined); // failing calls reject; without a listener an 'error' would crash the test run
  return client;
}

/**
 * Delivers a message into folder, as a mail server would, and returns its UID. `internalDate` is when the server
 * says it arrived (IMAP INTERNALDATE), for mail that was in the mailbox long before a test.
 */
export async function appendMail(
  server: ImapServerAddress,
  account: ImapAccount,
  folder: string,
  raw: string | Buffer,
  flags: string[] = [],
  internalDate?: Date,
): Promise<{ uid: number; uidValidity: number }> {
  const result = await withImap(server, account, (client) => client.append(folder, raw, flags, internalDate));
  if (!result || result.uid === undefined || result.uidValidity === undefined) {
    throw new Error(`APPEND to ${folder} returned no UID (server without UIDPLUS?)`);
  }
  return { uid: result.uid, uidValidity: Number(result.uidValidity) };
}

/** Creates folder (and its parents); fine if it exists already. */
export async function createFolder(server: ImapServerAddress, account: ImapAccount, folder: string): Promise<void> {
  await withImap(server, account, (client) => client.mailboxCreate(folder));
}

export interface FolderStatus {
  uidValidity: number;
  uidNext: number;
  messages: number;
}

/** STATUS of folder, numbers only (UIDVALIDITY is a 32-bit number, so Number is exact). */
export async function folderStatus(server: ImapServerAddress, account: ImapAccount, folder: string): Promise<FolderStatus> {
  const status = await withImap(server, account, (client) =>
    client.status(folder, { uidValidity: true, uidNext: true, messages: true }),
  );
  if (!status) throw new Error(`no STATUS for ${folder}`);
  return { uidValidity: Number(status.uidValidity), uidNext: status.uidNext ?? 0, messages: status.messages ?? 0 };
}

/** Sets \Deleted on the messages and expunges them, as a user deleting mail in another client would. */
export async function deleteMails(
  server: ImapServerAddress,
  account: ImapAccount,
  folder: string,
  uids: number[],
): Promise<void> {
  await withImap(server, account, async (client) => {
    const lock = await client.getMailboxLock(folder);
    try {
      await client.messageDelete(uids.join(','), { uid: true });
    } finally {
      lock.release();
    }
  });
}

/** A small RFC 5322 message; `n` makes subject and Message-ID distinct. */
export function sampleMail(n: number, opts: { from?: string; to?: string } = {}): string {
  return [
    `From: ${opts.from ?? 'customer@example.com'}`,
    `To: ${opts.to ?? 'support@example.com'}`,
    `Subject: Test message ${n}`,
    `Message-ID: <test-${n}-${Date.now()}@example.com>`,
    `Date: ${new Date().toUTCString()}`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    `Body of test message ${n}.`,
    '',
  ].join('\r\n');
}
