import { ImapFlow } from 'imapflow';
import type { Destination } from '../security/destinations.js';
import { messageIdIn } from './header-section.js';

/** A login to an IMAP server: with a password, or with an OAuth 2.0 access token (XOAUTH2 / OAUTHBEARER). */
export type ImapSettings = {
  host: string;
  port: number;
  tls: boolean;
  username: string;
} & ({ password: string; accessToken?: undefined } | { accessToken: string; password?: undefined });

/**
 * A client for one session, dialling the destination's checked address (see src/security/destinations.ts)
 * and verifying TLS against the configured host name; not connected yet. IDLE is driven by the caller.
 */
export function createImapClient(settings: ImapSettings, destination: Destination): ImapFlow {
  return new ImapFlow({
    host: destination.address,
    ...(destination.servername ? { servername: destination.servername } : {}),
    port: settings.port,
    secure: settings.tls,
    auth:
      settings.accessToken !== undefined
        ? { user: settings.username, accessToken: settings.accessToken }
        : { user: settings.username, pass: settings.password },
    logger: false,
    disableAutoIdle: true,
    // Servers drop IDLE after 30 min (RFC 2177); renew well before.
    maxIdleTime: 5 * 60_000,
    connectionTimeout: 15_000,
    greetingTimeout: 15_000,
  });
}

export type ImapFailureReason = 'dns' | 'refused' | 'timeout' | 'tls' | 'auth' | 'folder_missing' | 'protocol';

// Fixed texts: what the server said (banner, error text) is never passed on, so a test cannot be used to read other services.
export const IMAP_FAILURE_MESSAGES: Record<ImapFailureReason, string> = {
  dns: 'the host name does not resolve',
  refused: 'the connection was refused or closed: check host and port',
  timeout: 'the server did not answer in time: check host, port and firewall',
  tls: 'TLS failed: check the TLS setting, the port and the server certificate',
  auth: 'the server refused the user name or password',
  folder_missing: 'a folder does not exist on the server',
  protocol: 'the server did not answer as an IMAP server does',
};

export interface ImapFailure {
  reason: ImapFailureReason;
  message: string;
}

/** Turns whatever connecting, logging in or opening a folder threw into a reason an operator can act on. */
export function describeImapFailure(error: unknown): ImapFailure {
  const reason = imapFailureReason(error);
  return { reason, message: IMAP_FAILURE_MESSAGES[reason] };
}

function imapFailureReason(error: unknown): ImapFailureReason {
  const err = error as { code?: string; serverResponseCode?: string; authenticationFailed?: boolean; message?: string };
  const code = err.code ?? '';
  const detail = err.message ?? String(error);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'dns';
  // ClosedAfterConnectText/TLS: the server hung up before greeting.
  if (['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET'].includes(code) || code.startsWith('ClosedAfterConnect')) {
    return 'refused';
  }
  if (
    code === 'ETIMEDOUT' ||
    code === 'ETIMEOUT' ||
    code === 'GreetingTimeout' ||
    code === 'GREETING_TIMEOUT' ||
    code === 'ConnectionTimeout' ||
    code === 'CONNECT_TIMEOUT' ||
    /timed? ?out/i.test(detail)
  ) {
    return 'timeout';
  }
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || /certificate|ssl|tls/i.test(`${code} ${detail}`)) return 'tls';
  if (err.authenticationFailed || err.serverResponseCode === 'AUTHENTICATIONFAILED' || /auth/i.test(code)) return 'auth';
  if (err.serverResponseCode === 'NONEXISTENT' || /doesn.t exist|not exist|unknown mailbox|no such mailbox/i.test(detail)) {
    return 'folder_missing';
  }
  return 'protocol';
}

export type ImapConnectionCheck =
  | { ok: true; idle: boolean; folders: Array<{ folder: string; messages: number }> }
  | ({ ok: false; folder?: string } & ImapFailure);

/** A connection test that takes longer is a timeout, also when the server greets and then never answers. */
const CONNECTION_TEST_MS = 30_000;

/** Connects, logs in and opens every folder once, as the mailbox sync would, and says what failed. */
export async function checkImapConnection(
  settings: ImapSettings,
  destination: Destination,
  folders: readonly string[],
  timeoutMs = CONNECTION_TEST_MS,
): Promise<ImapConnectionCheck> {
  const client = createImapClient(settings, destination);
  client.on('error', () => undefined); // reported through the failing call below
  let folder: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<ImapConnectionCheck>((resolve) => {
    timer = setTimeout(() => {
      client.close();
      resolve({ ok: false, reason: 'timeout', message: IMAP_FAILURE_MESSAGES.timeout });
    }, timeoutMs);
  });
  const check = async (): Promise<ImapConnectionCheck> => {
    try {
      await client.connect();
      const opened = [];
      for (folder of folders) {
        const mailbox = await client.mailboxOpen(folder, { readOnly: true });
        opened.push({ folder, messages: mailbox.exists });
      }
      return { ok: true, idle: client.capabilities.has('IDLE'), folders: opened };
    } catch (error) {
      const failure = describeImapFailure(error);
      if (folder && (failure.reason === 'folder_missing' || failure.reason === 'protocol')) {
        return { ok: false, reason: 'folder_missing', message: IMAP_FAILURE_MESSAGES.folder_missing, folder };
      }
      return { ok: false, ...failure };
    }
  };
  try {
    return await Promise.race([check(), timedOut]);
  } finally {
    clearTimeout(timer);
    await client.logout().catch(() => client.close());
  }
}

/** What the server says about a mail before its download: UID, RFC822.SIZE, INTERNALDATE and the envelope. */
export interface MailHead {
  uid: number;
  size: number;
  internalDate: Date | undefined;
  /** The envelope's Message-ID, as the ingest would key it (`<id@host>`). */
  messageId: string | undefined;
  /** The envelope's one From address, lower-cased; undefined for none or several. */
  from: string | undefined;
  /** The envelope names a mail it answers (In-Reply-To). */
  answersAnother: boolean;
}

/** The heads of these mails of the selected folder, in UID order; no body is fetched. */
export async function fetchMailHeads(client: ImapFlow, uids: number[]): Promise<MailHead[]> {
  const heads: MailHead[] = [];
  for await (const message of client.fetch(
    uids.join(','),
    { uid: true, size: true, internalDate: true, envelope: true },
    { uid: true },
  )) {
    const from = message.envelope?.from ?? [];
    const address = from.length === 1 ? from[0]?.address : undefined;
    heads.push({
      uid: message.uid,
      size: message.size ?? 0,
      internalDate: message.internalDate ? new Date(message.internalDate) : undefined,
      messageId: messageIdIn(message.envelope?.messageId),
      from: typeof address === 'string' ? address.toLowerCase() : undefined,
      answersAnother: Boolean(message.envelope?.inReplyTo),
    });
  }
  return heads.sort((a, b) => a.uid - b.uid);
}
