import type { Client } from '@temporalio/client';
import type { Logger } from 'pino';
import type { Config, OAuthClientSettings, RateLimitSettings } from '../config.js';
import type { Db } from '../db/connection.js';
import type { UserRole } from '../domain/conversation.js';
import type { Ingest } from '../ingest/ingest.js';
import type { SmtpCapture } from '../mail/smtp-capture.js';

export interface ApiDeps {
  db: Db;
  temporal: Client;
  ingest: Ingest;
  /**
   * Without ALLOWED_PRIVATE_NETWORKS no non-public mail server address is allowed, as in production by default;
   * without TRUSTED_PROXIES X-Forwarded-For is never read; a rate limit left out has its default.
   */
  config: Pick<Config, 'SECRET_KEY' | 'MAX_INBOUND_BYTES' | 'PUBLIC_URL' | 'INBOUND_DOMAIN'> &
    Partial<Pick<Config, 'ALLOWED_PRIVATE_NETWORKS' | 'TRUSTED_PROXIES' | keyof RateLimitSettings>> &
    Partial<Pick<Config, 'MAX_IMPORT_BYTES' | 'METRICS_TOKEN'>> &
    Partial<OAuthClientSettings> &
    Partial<Pick<Config, 'TEMPORAL_UI_ORIGIN'>>;
  logger: Logger;
  /** The built-in outbound mail capture, when `npm start` runs without SMTP_URL. */
  capture?: SmtpCapture;
  /** `npm start` only: the dev server's Web UI, on this machine, decodes histories without an API key (it cannot send one). */
  codecFromLoopback?: boolean;
  /** Where workflows the API starts are run; tests give each stack its own. */
  taskQueue?: string;
  /** Milliseconds since the epoch as the rate limits see them; tests move it instead of waiting. */
  clock?: () => number;
}

export interface AuthenticatedUser {
  id: string;
  accountId: string;
  name: string;
  role: UserRole;
}

/** Hono's typed context for the whole app. */
export interface AppEnv {
  Variables: { user: AuthenticatedUser };
}
