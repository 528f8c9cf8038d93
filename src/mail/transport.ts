import { createHash } from 'node:crypto';
import nodemailer from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { decryptCredential } from '../security/credentials.js';
import { resolveDestination, type Destination } from '../security/destinations.js';

/** A channel's own SMTP server (channels.smtp_*); without one, mail goes through the deployment's. */
export interface SmtpServer {
  host: string;
  port: number;
  /** Implicit TLS (465); otherwise STARTTLS when the server offers it. */
  secure: boolean;
  username: string | null;
  password: string | null;
  /** An OAuth 2.0 access token for username (XOAUTH2), instead of the password. */
  accessToken?: string;
}

export interface MailTransport {
  /**
   * Rejects with nodemailer's error (see classifySendFailure), or an AbortError past SEND_DEADLINE_MS. Resolves with the
   * recipients the server refused while it took the mail for the others (a reply's Cc or Bcc, or its To).
   */
  send(message: Mail.Options, server?: SmtpServer): Promise<{ rejected: string[] }>;
  close(): void;
}

/**
 * How long one step of an SMTP session may take: a hung server fails the send within seconds, so the
 * activity that sends can have a short timeout. (nodemailer's own are 2 minutes to connect and 10 of silence.)
 */
export const SMTP_TIMEOUTS = {
  /** The TCP connection, DNS included, up to the greeting. */
  connectionTimeout: 10_000,
  greetingTimeout: 10_000,
  /** Silence on the socket at any later step (a reply to MAIL, RCPT, DATA, the message). */
  socketTimeout: 20_000,
} as const;

/**
 * The longest a whole send takes, the lookup of a channel's server included: a server trickling its
 * replies, which no socket timeout notices, is cut off here (the connection closed), so the activity
 * that sends ends within its start-to-close timeout.
 */
export const SEND_DEADLINE_MS = 45_000;

/** The channel's SMTP server from its row, the password decrypted; undefined when it uses the deployment's. */
export function channelSmtpServer(
  channel: {
    smtp_host: string | null;
    smtp_port: number | null;
    smtp_secure: boolean;
    smtp_username: string | null;
    smtp_password_encrypted: string | null;
  },
  secretKey: string,
): SmtpServer | undefined {
  if (!channel.smtp_host) return undefined;
  return {
    host: channel.smtp_host,
    port: channel.smtp_port ?? (channel.smtp_secure ? 465 : 587),
    secure: channel.smtp_secure,
    username: channel.smtp_username,
    password: channel.smtp_password_encrypted ? decryptCredential(channel.smtp_password_encrypted, secretKey) : null,
  };
}

/**
 * A pooled nodemailer transport for a channel's server, dialling the destination's checked address
 * (see src/security/destinations.ts); TLS, implicit or STARTTLS, is verified against the host name.
 */
export function smtpServerTransport(
  server: SmtpServer,
  destination: Destination,
  options: { pool?: boolean; timeoutMs?: number } = {},
) {
  const timeouts = options.timeoutMs
    ? { connectionTimeout: options.timeoutMs, greetingTimeout: options.timeoutMs, socketTimeout: options.timeoutMs }
    : SMTP_TIMEOUTS;
  return nodemailer.createTransport({
    host: destination.address,
    ...(destination.servername ? { tls: { servername: destination.servername } } : {}),
    port: server.port,
    secure: server.secure,
    ...(server.username
      ? {
          auth: server.accessToken
            ? { type: 'OAuth2' as const, user: server.username, accessToken: server.accessToken }
            : { user: server.username, pass: server.password ?? '' },
        }
      : {}),
    pool: options.pool ?? true,
    ...timeouts,
  });
}

/**
 * Outbound SMTP from a URL such as smtp://user:pass@host:587 (smtps:// for implicit TLS), and each
 * channel's own server when it has one. Connections are pooled (a burst of out-of-office notes would
 * otherwise open one SMTP session each); `?pool=false` turns it off for the URL's server.
 * A channel's server is an admin's choice, so it is dialled only where the destination policy allows
 * (`allowedPrivateNetworks`: Config.ALLOWED_PRIVATE_NETWORKS, none when left out); the deployment's is the operator's.
 */
export function createMailTransport(
  smtpUrl: string,
  { allowedPrivateNetworks = [] }: { allowedPrivateNetworks?: readonly string[] } = {},
): MailTransport {
  const url = new URL(smtpUrl);
  if (!url.searchParams.has('pool')) url.searchParams.set('pool', 'true');
  // The URL may set its own (?socketTimeout=60000); otherwise the deployment's server gets the same as channels'.
  for (const [name, ms] of Object.entries(SMTP_TIMEOUTS)) {
    if (!url.searchParams.has(name)) url.searchParams.set(name, String(ms));
  }
  const deployment = nodemailer.createTransport(url.toString());
  // One pool per distinct channel server and address; a changed password is a new key, the old pool idles out.
  const channelPools = new Map<string, ReturnType<typeof smtpServerTransport>>();
  // An OAuth login's pool, keyed without its token: a refreshed token replaces the pool (and closes the old one).
  const oauthPools = new Map<string, { accessToken: string; pool: ReturnType<typeof smtpServerTransport> }>();
  // Resolved at every send: a refused or unresolvable host fails the send (the activity retries it) before any connection.
  const poolFor = async (server: SmtpServer) => {
    const destination = await resolveDestination(server.host, allowedPrivateNetworks);
    const { accessToken, ...login } = server;
    const key = createHash('sha256')
      .update(JSON.stringify({ server: login, address: destination.address }))
      .digest('hex');
    if (accessToken) {
      const current = oauthPools.get(key);
      if (current?.accessToken === accessToken) return current.pool;
      current?.pool.close();
      const pool = smtpServerTransport(server, destination);
      oauthPools.set(key, { accessToken, pool });
      return pool;
    }
    let pool = channelPools.get(key);
    if (!pool) {
      pool = smtpServerTransport(server, destination);
      channelPools.set(key, pool);
    }
    return pool;
  };
  return {
    async send(message, server) {
      const deadline = AbortSignal.timeout(SEND_DEADLINE_MS);
      const transport = server ? await poolFor(server) : deployment;
      // Aborting fails this message and closes its connection; the pool's other deliveries go on.
      const info = await transport.sendMail({ ...message, signal: deadline });
      return { rejected: (info.rejected ?? []).map(String) };
    },
    close: () => {
      deployment.close();
      for (const pool of channelPools.values()) pool.close();
      for (const { pool } of oauthPools.values()) pool.close();
    },
  };
}

export type SmtpFailureReason = 'dns' | 'refused' | 'timeout' | 'tls' | 'auth' | 'protocol';

// Fixed texts: the server's banner and error text are never passed on, so a test cannot be used to read other services.
export const SMTP_FAILURE_MESSAGES: Record<SmtpFailureReason, string> = {
  dns: 'the host name does not resolve',
  refused: 'the connection was refused or closed: check host and port',
  timeout: 'the server did not answer in time: check host, port and firewall',
  tls: 'TLS failed: check the secure setting, the port and the server certificate',
  auth: 'the server refused the user name or password',
  protocol: 'the server did not answer as an SMTP server does',
};

/** Turns what nodemailer threw while connecting, securing or logging in into a reason an operator can act on. */
function smtpFailureReason(error: unknown): SmtpFailureReason {
  const err = error as { code?: string; originalCode?: string };
  // nodemailer's own code says which step failed; the system code it replaced says how.
  const code = err.code ?? '';
  const system = err.originalCode ?? '';
  if (code === 'EDNS' || system === 'ENOTFOUND' || system === 'EAI_AGAIN') return 'dns';
  if (code === 'ETIMEDOUT' || system === 'ETIMEDOUT') return 'timeout';
  if (code === 'ETLS' || system.startsWith('ERR_SSL') || system.startsWith('ERR_TLS') || /CERT|SIGNATURE/.test(system)) {
    return 'tls';
  }
  if (code === 'EAUTH' || code === 'ENOAUTH') return 'auth';
  if (code === 'ECONNECTION' || code === 'ESOCKET') return 'refused';
  return 'protocol';
}

export type SmtpServerCheck = { ok: true } | { ok: false; reason: SmtpFailureReason; message: string };

/** Connects, secures and logs in as a send would, without sending, and says what failed. */
export async function checkSmtpServer(server: SmtpServer, destination: Destination, timeoutMs: number): Promise<SmtpServerCheck> {
  const transporter = smtpServerTransport(server, destination, { pool: false, timeoutMs });
  try {
    await transporter.verify();
    return { ok: true };
  } catch (error) {
    const reason = smtpFailureReason(error);
    return { ok: false, reason, message: SMTP_FAILURE_MESSAGES[reason] };
  } finally {
    transporter.close();
  }
}
