import type { OAuthProviderName } from '../db/schema.js';

// The OAuth providers a channel's mailbox can be connected with: Google and Microsoft as presets (endpoints by
// discovery of their issuer, scopes, IMAP and SMTP servers), and any other provider by its issuer or endpoints.

export const OAUTH_PROVIDERS = ['google', 'microsoft', 'generic'] as const satisfies readonly OAuthProviderName[];

export interface ImapServer {
  host: string;
  port: number;
  tls: boolean;
}

export interface SmtpServerAddress {
  host: string;
  port: number;
  /** Implicit TLS (465); otherwise STARTTLS. */
  secure: boolean;
}

/** Where tokens come from: an issuer whose discovery document names the endpoints, or the endpoints themselves. */
export type ProviderEndpoints =
  | { issuer: string; tokenEndpoint?: undefined; authorizationEndpoint?: undefined; revocationEndpoint?: undefined }
  | { issuer?: undefined; authorizationEndpoint: string; tokenEndpoint: string; revocationEndpoint?: string };

export interface ProviderPreset {
  issuer: string;
  scopes: string[];
  /** Extra parameters of the authorization request. */
  authorizationParams: Record<string, string>;
  imap: ImapServer;
  smtp: SmtpServerAddress;
}

/** Microsoft's tenant: 'organizations' (any work account), 'common', 'consumers', or a tenant id or domain. */
export const MICROSOFT_TENANT = /^(?:organizations|common|consumers|[0-9a-f-]{36}|[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){1,8})$/i;

export function providerPreset(provider: 'google' | 'microsoft', tenant = 'organizations'): ProviderPreset {
  if (provider === 'google') {
    return {
      issuer: 'https://accounts.google.com',
      scopes: ['https://mail.google.com/', 'openid', 'email'],
      // offline: a refresh token; consent: a new one also when the account granted this client before.
      authorizationParams: { access_type: 'offline', prompt: 'consent' },
      imap: { host: 'imap.gmail.com', port: 993, tls: true },
      smtp: { host: 'smtp.gmail.com', port: 465, secure: true },
    };
  }
  return {
    issuer: `https://login.microsoftonline.com/${tenant}/v2.0`,
    scopes: [
      'https://outlook.office.com/IMAP.AccessAsUser.All',
      'https://outlook.office.com/SMTP.Send',
      'offline_access',
      'openid',
      'email',
    ],
    authorizationParams: {},
    imap: { host: 'outlook.office365.com', port: 993, tls: true },
    smtp: { host: 'smtp.office365.com', port: 587, secure: false },
  };
}

/** The deployment's own OAuth clients (OAUTH_GOOGLE_CLIENT_ID, ...), used where a channel brings none. */
export interface DeploymentOAuthClients {
  google?: { clientId: string; clientSecret?: string };
  microsoft?: { clientId: string; clientSecret?: string; tenant: string };
}
