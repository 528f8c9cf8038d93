import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { MICROSOFT_TENANT, type DeploymentOAuthClients } from './oauth/providers.js';
import { parsePayloadKeys } from './temporal/payload-codec.js';
import { TASK_QUEUE } from './workflows/ids.js';

/** A comma-separated list of CIDR ranges, e.g. `127.0.0.0/8,::1/128,10.20.0.0/16`; empty by default. */
function cidrRanges() {
  return z
    .string()
    .default('')
    .transform((value, ctx) => {
      const ranges = value
        .split(',')
        .map((range) => range.trim())
        .filter(Boolean);
      for (const range of ranges) {
        if (!ipaddr.isValidCIDR(range))
          ctx.addIssue({ code: 'custom', message: `"${range}" is not a CIDR range such as 10.0.0.0/8` });
      }
      return ranges;
    });
}

/**
 * Per API process (N processes allow N times as much). A forwarder delivering its backlog after an outage
 * gets 600 mails at once and then 10 a second, a 429 with Retry-After beyond (MTAs retry, the store dedupes).
 */
export const RATE_LIMIT_DEFAULTS = {
  RATE_LIMIT_INBOUND_PER_MINUTE: 600,
  RATE_LIMIT_SURVEY_PER_MINUTE: 60,
  RATE_LIMIT_API_KEY_PER_MINUTE: 1200,
} as const;

export type RateLimitSettings = { -readonly [Name in keyof typeof RATE_LIMIT_DEFAULTS]: number };

function rateLimit(perMinute: number) {
  // Empty (docker-compose passes `${NAME:-}`) is unset, the default: never 0, which would mean unlimited.
  return z.preprocess(
    (value) => (value === '' ? undefined : value),
    z.coerce.number().int().min(0).max(1_000_000).default(perMinute),
  );
}

/** A text setting that may be left out; empty (docker-compose passes `${NAME:-}`) is left out too. */
function optionalSetting() {
  return z.preprocess((value) => (value === '' ? undefined : value), z.string().min(1).optional());
}

/** Optional text; empty (docker-compose passes `${NAME:-}`) is unset. */
function optionalText() {
  return z.preprocess((value) => (value === '' ? undefined : value), z.string().min(1).optional());
}

// Catches milliseconds written as seconds: no deploy should wait longer than five minutes for one process.
const MAX_SHUTDOWN_GRACE_SECONDS = 300;

// Environment → typed config, validated once at start-up so a bad setting fails loudly and by name.
const envSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().default('127.0.0.1'),
  /** Where links in outgoing mail (CSAT survey) point to. */
  PUBLIC_URL: z.url().default('http://localhost:3000'),
  /** Forwarding addresses of channels are username@subdomain.<INBOUND_DOMAIN>; its MX points at the forwarder. */
  INBOUND_DOMAIN: z
    .string()
    .regex(
      /^(?=.{1,200}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$/i,
      'INBOUND_DOMAIN must be a domain name such as inbound.example.com',
    )
    .default('inbound.mailroom.localhost'),
  /** PostgreSQL connection string; without it the embedded PGlite under DATA_DIR is used. */
  DATABASE_URL: z.string().optional(),
  DATA_DIR: z.string().default('.data'),
  TEMPORAL_ADDRESS: z.string().default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  /** Where the worker polls and the API starts workflows; one queue per deployment. */
  TEMPORAL_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE),
  /** Outbound SMTP, e.g. smtp://user:pass@host:587; without it mail goes to the built-in capture. */
  SMTP_URL: z.string().optional(),
  SMTP_CAPTURE_PORT: z.coerce.number().int().min(0).max(65535).default(2525),
  /** Signs CSAT links and encrypts mailbox passwords. Always required: `npm start` and the tests inject their own. */
  SECRET_KEY: z
    .string({ error: 'SECRET_KEY is required: 32 or more random characters' })
    .min(32, 'SECRET_KEY must be at least 32 characters'),
  /**
   * Keys that encrypt what Temporal stores, `id:<base64 of 32 bytes>,…`, the current one first; all of them decrypt
   * (rotation). Unset: a key derived from SECRET_KEY, which also decrypts when keys are set.
   */
  PAYLOAD_ENCRYPTION_KEYS: z
    .string()
    .default('')
    .transform((value, ctx) => {
      try {
        return parsePayloadKeys(value);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
  /**
   * Origins of the Temporal Web UI, comma-separated (e.g. `https://temporal.example.com`), that may call the codec
   * endpoint from the browser (CORS); unset: none (the `temporal` CLI needs no CORS).
   */
  TEMPORAL_UI_ORIGIN: z
    .string()
    .default('')
    .transform((value, ctx) => {
      const origins = value
        .split(',')
        .map((origin) => origin.trim())
        .filter(Boolean);
      for (const origin of origins) {
        if (!URL.canParse(origin) || new URL(origin).origin !== origin)
          ctx.addIssue({ code: 'custom', message: `"${origin}" is not an origin such as https://temporal.example.com` });
      }
      return origins;
    }),
  /**
   * Hosts that admins configure (IMAP, SMTP) may not resolve to loopback, private, link-local or
   * unique-local addresses, except into these CIDR ranges, e.g. `127.0.0.0/8,::1/128,10.20.0.0/16`.
   */
  ALLOWED_PRIVATE_NETWORKS: cidrRanges(),
  /**
   * Proxies in front of the API, e.g. `10.0.0.0/8`: from a connection of theirs the survey pages' rate limit
   * takes the client address from X-Forwarded-For. Never read otherwise (any client can write that header).
   */
  TRUSTED_PROXIES: cidrRanges(),
  /** The SMTP receiver, the inbound domain's MX (`npm run receiver`): where it listens. */
  SMTP_RECEIVER_PORT: z.coerce.number().int().min(0).max(65535).default(2526),
  SMTP_RECEIVER_HOST: z.string().default('127.0.0.1'),
  /** The name it greets with (the MX host name); the machine's host name when unset. */
  SMTP_RECEIVER_HOSTNAME: optionalSetting(),
  /** PEM files of its STARTTLS key and certificate (both or neither); without them it offers no STARTTLS. */
  SMTP_RECEIVER_TLS_KEY_FILE: optionalSetting(),
  SMTP_RECEIVER_TLS_CERT_FILE: optionalSetting(),
  /** Connections at once; beyond, 421 (the sender tries again). */
  SMTP_RECEIVER_MAX_CLIENTS: z.coerce.number().int().min(1).max(100_000).default(200),
  /** Recipients in one mail; beyond, 452 (the sender sends the rest in another transaction). */
  SMTP_RECEIVER_MAX_RECIPIENTS: z.coerce.number().int().min(1).max(1000).default(50),
  /** Unknown recipients in one connection before it is closed. */
  SMTP_RECEIVER_MAX_BAD_RECIPIENTS: z.coerce.number().int().min(1).max(1000).default(10),
  /** Seconds a client may stay silent, also in the middle of a mail, before it is disconnected. */
  SMTP_RECEIVER_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(3600).default(120),
  /** Bytes of mail all connections together may hold while they arrive; beyond, 451 (one mail alone always fits). */
  SMTP_RECEIVER_MAX_BUFFERED_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(256 * 1024 * 1024),
  /** Largest raw message the inbound endpoint accepts. */
  MAX_INBOUND_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(25 * 1024 * 1024),
  /** Largest mailbox export (mbox or Maildir tar, as uploaded, gzipped or not) an admin may upload for import. */
  MAX_IMPORT_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(2 * 1024 ** 3),
  /** How large a gzipped export may unpack to; reading stops there (a decompression bomb). */
  MAX_IMPORT_UNPACKED_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(20 * 1024 ** 3),
  /** Mails a minute one channel's forwarder may post (and at once, after a pause); 0 = unlimited. */
  RATE_LIMIT_INBOUND_PER_MINUTE: rateLimit(RATE_LIMIT_DEFAULTS.RATE_LIMIT_INBOUND_PER_MINUTE),
  /** Survey page views and submits a minute from one client address (IPv6: one /64); 0 = unlimited. */
  RATE_LIMIT_SURVEY_PER_MINUTE: rateLimit(RATE_LIMIT_DEFAULTS.RATE_LIMIT_SURVEY_PER_MINUTE),
  /** /v1 requests a minute with one API key; 0 = unlimited. */
  RATE_LIMIT_API_KEY_PER_MINUTE: rateLimit(RATE_LIMIT_DEFAULTS.RATE_LIMIT_API_KEY_PER_MINUTE),
  /**
   * The deployment's OAuth clients for mailboxes at Google and Microsoft (registered with PUBLIC_URL's callback,
   * PUBLIC_URL + /v1/oauth/callback, as redirect URI); a channel may bring its own client instead.
   */
  OAUTH_GOOGLE_CLIENT_ID: optionalText(),
  OAUTH_GOOGLE_CLIENT_SECRET: optionalText(),
  OAUTH_MICROSOFT_CLIENT_ID: optionalText(),
  OAUTH_MICROSOFT_CLIENT_SECRET: optionalText(),
  /** 'organizations' (any work or school account), 'common', 'consumers', or one tenant's id or domain. */
  OAUTH_MICROSOFT_TENANT: z.preprocess(
    (value) => (value === '' ? undefined : value),
    z
      .string()
      .regex(MICROSOFT_TENANT, 'OAUTH_MICROSOFT_TENANT must be organizations, common, consumers, a tenant id or a domain')
      .default('organizations'),
  ),
  /** An OpenAI-compatible chat-completions endpoint for AI agents, e.g. https://api.openai.com/v1; optional. */
  AI_BASE_URL: z.url().optional(),
  AI_API_KEY: z.string().optional(),
  AI_MODEL: z.string().min(1).default('gpt-4o-mini'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** The wait after a webhook delivery's first failed attempt; it doubles after each further one, up to an hour. */
  WEBHOOK_RETRY_INITIAL_SECONDS: z.coerce.number().int().min(1).max(3600).default(5),
  /**
   * How long a webhook delivery is retried before it is given up (at least a day), and how long a subscription may
   * fail every attempt before it is disabled.
   */
  WEBHOOK_RETRY_HOURS: z.coerce
    .number()
    .int()
    .min(24)
    .max(24 * 30)
    .default(24),
  /** Prometheus scrapers other than loopback send it as a bearer token to /metrics; unset: loopback only. */
  METRICS_TOKEN: optionalSetting(),
  /** The worker's and the SMTP receiver's /metrics port (the API serves /metrics on its own); unset: none. */
  METRICS_PORT: z.preprocess((value) => (value === '' ? undefined : value), z.coerce.number().int().min(0).max(65535).optional()),
  METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  /**
   * On SIGTERM or SIGINT, how long the API lets requests in flight finish, and the worker its running
   * activities, before cutting them off (Temporal retries a cut-off activity on another worker).
   */
  SHUTDOWN_GRACE_SECONDS: z.preprocess(
    (value) => (value === '' ? undefined : value),
    z.coerce.number().int().min(0).max(MAX_SHUTDOWN_GRACE_SECONDS).default(20),
  ),
});

export type Config = z.infer<typeof envSchema>;

/** The AI agents' OpenAI-compatible endpoint, when one is configured. */
export function openAiCompatibleSettings(config: Config) {
  if (!config.AI_BASE_URL) return undefined;
  return { baseUrl: config.AI_BASE_URL, model: config.AI_MODEL, ...(config.AI_API_KEY ? { apiKey: config.AI_API_KEY } : {}) };
}

export type OAuthClientSettings = Pick<
  Config,
  | 'OAUTH_GOOGLE_CLIENT_ID'
  | 'OAUTH_GOOGLE_CLIENT_SECRET'
  | 'OAUTH_MICROSOFT_CLIENT_ID'
  | 'OAUTH_MICROSOFT_CLIENT_SECRET'
  | 'OAUTH_MICROSOFT_TENANT'
>;

/** The deployment's OAuth clients, for the providers it has one for. */
export function deploymentOAuthClients(config: Partial<OAuthClientSettings>): DeploymentOAuthClients {
  const secret = (value: string | undefined) => (value ? { clientSecret: value } : {});
  return {
    ...(config.OAUTH_GOOGLE_CLIENT_ID
      ? { google: { clientId: config.OAUTH_GOOGLE_CLIENT_ID, ...secret(config.OAUTH_GOOGLE_CLIENT_SECRET) } }
      : {}),
    ...(config.OAUTH_MICROSOFT_CLIENT_ID
      ? {
          microsoft: {
            clientId: config.OAUTH_MICROSOFT_CLIENT_ID,
            tenant: config.OAUTH_MICROSOFT_TENANT ?? 'organizations',
            ...secret(config.OAUTH_MICROSOFT_CLIENT_SECRET),
          },
        }
      : {}),
  };
}

/** How webhook deliveries are retried (the worker's side; the dispatcher's Temporal client is added there). */
export function webhookDeliverySettings(config: Config) {
  return {
    retryInitialMs: config.WEBHOOK_RETRY_INITIAL_SECONDS * 1000,
    retryWindowMs: config.WEBHOOK_RETRY_HOURS * 60 * 60_000,
  };
}

/** How large a mail of an uploaded mailbox export (as any inbound mail), and a gzipped export unpacked, may be. */
export function mailboxImportLimits(config: Config) {
  return { maxMailBytes: config.MAX_INBOUND_BYTES, maxUnpackedBytes: config.MAX_IMPORT_UNPACKED_BYTES };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Loopback only: what `npm start` and the tests allow, where every server runs on this machine. */
export const LOOPBACK_NETWORKS = ['127.0.0.0/8', '::1/128'];

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`Invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  return parsed.data;
}
