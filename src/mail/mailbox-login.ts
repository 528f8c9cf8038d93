import type { Db } from '../db/connection.js';
import type { Channel } from '../db/schema.js';
import { createAccessTokens } from '../oauth/access-tokens.js';
import type { DeploymentOAuthClients } from '../oauth/providers.js';
import { decryptCredential } from '../security/credentials.js';
import type { ImapSettings } from './imap-connection.js';
import { channelSmtpServer, type SmtpServer } from './transport.js';

// The one place that decides how Mailroom logs in to a channel's IMAP and SMTP servers: the stored password, or
// the OAuth grant's current access token (refreshed ahead of expiry). Every IMAP session, Sent-folder copy and
// send asks here, and tells here when a server refused the login, so OAuth works wherever a password did.

/** IMAP is on but host, port, user or credentials are missing. */
export class ImapSettingsIncompleteError extends Error {
  override name = 'ImapSettingsIncompleteError';
}

type SmtpColumns = Pick<
  Channel,
  'id' | 'smtp_host' | 'smtp_port' | 'smtp_secure' | 'smtp_username' | 'smtp_password_encrypted' | 'smtp_auth'
>;

export interface MailboxLoginDeps {
  db: Db;
  secretKey: string;
  allowedPrivateNetworks: readonly string[];
  oauthClients?: DeploymentOAuthClients;
}

export function createMailboxLogins({ db, secretKey, allowedPrivateNetworks, oauthClients }: MailboxLoginDeps) {
  const tokens = createAccessTokens({
    db,
    secretKey,
    allowedPrivateNetworks,
    ...(oauthClients ? { deploymentClients: oauthClients } : {}),
  });

  return {
    /**
     * How to log in to the channel's IMAP server now. With OAuth: throws ReauthorizationRequiredError when the grant
     * needs an admin, TokenRefreshFailedError when the provider is away.
     */
    async imapSettings(channel: Channel): Promise<ImapSettings> {
      const oauth = channel.imap_auth === 'oauth2';
      if (!channel.imap_host || !channel.imap_port || !channel.imap_username || (!oauth && !channel.imap_password_encrypted)) {
        throw new ImapSettingsIncompleteError(`channel ${channel.id} has IMAP enabled but incomplete settings`);
      }
      const server = { host: channel.imap_host, port: channel.imap_port, tls: channel.imap_tls, username: channel.imap_username };
      if (oauth) return { ...server, accessToken: (await tokens.accessTokenFor(channel.id)).accessToken };
      return { ...server, password: decryptCredential(channel.imap_password_encrypted!, secretKey) };
    },

    /** The channel's own SMTP server with its login now; undefined when it sends through the deployment's. */
    async smtpServer(channel: SmtpColumns): Promise<SmtpServer | undefined> {
      if (channel.smtp_auth !== 'oauth2') return channelSmtpServer(channel, secretKey);
      const server = channelSmtpServer({ ...channel, smtp_password_encrypted: null }, secretKey);
      if (!server) return undefined;
      return { ...server, accessToken: (await tokens.accessTokenFor(channel.id)).accessToken };
    },

    /** The server refused this login. A password is the admin's to fix; a token is refreshed once, then the grant ends. */
    async refused(channelId: string, login: { accessToken?: string | undefined }, server: 'IMAP' | 'SMTP'): Promise<void> {
      if (login.accessToken) await tokens.refused(channelId, login.accessToken, server);
    },

    /** The server took this login. */
    async accepted(channelId: string, login: { accessToken?: string | undefined }): Promise<void> {
      if (login.accessToken) await tokens.accepted(channelId);
    },

    /** Whether two channel rows log in to IMAP the same way (a change needs a new session); no secret is compared in clear. */
    sameImapLogin(a: Channel, b: Channel): boolean {
      const login = (channel: Channel) =>
        JSON.stringify([
          channel.imap_host,
          channel.imap_port,
          channel.imap_tls,
          channel.imap_username,
          channel.imap_auth,
          channel.imap_password_encrypted,
        ]);
      return login(a) === login(b);
    },
  };
}

export type MailboxLogins = ReturnType<typeof createMailboxLogins>;
