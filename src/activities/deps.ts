import type { Db } from '../db/connection.js';
import type { OpenAiCompatibleSettings } from './ai.js';
import type { Ingest } from '../ingest/ingest.js';
import type { MailboxImportLimits } from './mailbox-import.js';
import type { MailTransport } from '../mail/transport.js';
import type { WebhookDeliverySettings } from './webhooks.js';
import type { DeploymentOAuthClients } from '../oauth/providers.js';

/** What activities need from the outside world; built once by the worker, replaced in tests. */
export interface ActivityDeps {
  db: Db;
  mail: MailTransport;
  /** Base URL of the public API, for links in mail. */
  publicUrl: string;
  /** Signs CSAT links; derives the key that encrypts mailbox passwords. */
  secretKey: string;
  /**
   * CIDR ranges of non-public addresses that channels' IMAP servers may still resolve to
   * (Config.ALLOWED_PRIVATE_NETWORKS); empty in production unless the operator says otherwise.
   */
  allowedPrivateNetworks: readonly string[];
  /** INBOUND_DOMAIN: a channel's forwarding address under it is one of its own, never mailed automatically. */
  inboundDomain?: string;
  /** The inbound path that IMAP mailboxes feed, the same one the forwarder endpoint uses. */
  ingest: Ingest;
  /** The deployment's OAuth clients for Google and Microsoft mailboxes (OAUTH_*); channels may bring their own. */
  oauthClients?: DeploymentOAuthClients;
  /** The OpenAI-compatible endpoint AI agents may use; without it only the offline knowledge-base provider works. */
  openAiCompatible?: OpenAiCompatibleSettings;
  /** How large a mail of an uploaded mailbox export, and a gzipped export unpacked, may be; the defaults unless given. */
  mailboxImports?: MailboxImportLimits;
  /** Webhook retries (WEBHOOK_*) and the Temporal client the dispatcher hands deliveries to lanes with. */
  webhooks?: WebhookDeliverySettings;
}
