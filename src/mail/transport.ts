import { createHash } from 'node:crypto';
import nodemailer from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { decryptCredential } from '../security/credentials.js';

/** A channel's own SMTP server (channels.smtp_*); without one, mail goes through the deployment's. */
export interface SmtpServer {
  host: string;
  port: number;
  /** Implicit TLS (465); otherwise STARTTLS when the server offers it. */
  secure: boolean;
  username: string | null;
  password: string | null;
}

export interface MailTransport {
  send(message: Mail.Options, server?: SmtpServer): Promise<void>;
  close(): void;
}

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

/** A pooled nodemailer transport for a channel's server. */
export function smtpServerTransport(server: SmtpServer, options: { pool?: boolean; timeoutMs?: number } = {}) {
  const timeout = options.timeoutMs ?? 30_000;
  return nodemailer.createTransport({
    host: server.host,
    port: server.port,
    secure: server.secure,
    ...(server.username ? { auth: { user: server.username, pass: server.password ?? '' } } : {}),
    pool: options.pool ?? true,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
  });
}

/**
 * Outbound SMTP from a URL such as smtp://user:pass@host:587 (smtps:// for implicit TLS), and each
 * channel's own server when it has one. Connections are pooled (a burst of out-of-office notes would
 * otherwise open one SMTP session each); `?pool=false` turns it off for the URL's server.
 */
export function createMailTransport(smtpUrl: string): MailTransport {
  const url = new URL(smtpUrl);
  if (!url.searchParams.has('pool')) url.searchParams.set('pool', 'true');
  const deployment = nodemailer.createTransport(url.toString());
  // One pool per distinct channel server; a changed password is a new key, the old pool idles out.
  const channelPools = new Map<string, ReturnType<typeof smtpServerTransport>>();
  const poolFor = (server: SmtpServer) => {
    const key = createHash('sha256').update(JSON.stringify(server)).digest('hex');
    let pool = channelPools.get(key);
    if (!pool) {
      pool = smtpServerTransport(server);
      channelPools.set(key, pool);
    }
    return pool;
  };
  return {
    async send(message, server) {
      await (server ? poolFor(server) : deployment).sendMail(message);
    },
    close: () => {
      deployment.close();
      for (const pool of channelPools.values()) pool.close();
    },
  };
}
