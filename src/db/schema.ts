import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';
import type { AssignmentStrategy } from '../domain/assignment.js';
import type { BusinessHours } from '../domain/business-hours.js';
import type { MailboxImportState } from '../domain/mailbox-import.js';
import type { Priority, RoutingActions, RoutingCondition } from '../domain/routing-rules.js';
import type {
  ConversationStage,
  ConversationStatus,
  DeliveryStatus,
  InboundSource,
  MailClassification,
  OutboundKind,
  SentCopyKind,
  SentCopyStatus,
  SenderVerdictKind,
  UserRole,
} from '../domain/conversation.js';

// Typed view of the tables created by src/db/migrations. Keep both in step.

type CreatedAt = ColumnType<Date, Date | string | undefined, never>;
type Timestamp = ColumnType<Date, Date | string, Date | string>;
// JSON columns: written as JSON text, read back parsed; all of ours have a default.
type Json<T> = ColumnType<T, string | undefined, string>;

export type InboundStatus = 'received' | 'threaded' | 'rejected';
export type AiProviderKind = 'knowledge_base' | 'openai_compatible';

export interface AccountsTable {
  id: string;
  name: string;
  created_at: CreatedAt;
  /** Closed conversations older than this many days are erased by the retention sweep; null keeps them. */
  retention_days: ColumnType<number | null, number | null | undefined, number | null>;
}

export interface UsersTable {
  id: string;
  account_id: string;
  name: string;
  email: string;
  role: UserRole;
  available: Generated<boolean>;
  created_at: CreatedAt;
  /** The agent's signature below their replies; may hold {{agent.name}} and {{channel.name}}. */
  signature_text: ColumnType<string | null, string | null | undefined, string | null>;
  signature_html: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface ApiKeysTable {
  id: string;
  user_id: string;
  name: string;
  /** sha256 of the key; the key itself is shown once, at creation, and never stored. */
  key_hash: string;
  /** The key's first characters, so that a person can tell their keys apart. */
  key_prefix: string;
  created_at: CreatedAt;
  last_used_at: Timestamp | null;
  revoked_at: Timestamp | null;
}

export interface IdempotencyKeysTable {
  user_id: string;
  key: string;
  /** Method, path and body of the first request: the same key with another request is refused. */
  request_hash: string;
  /** Null while the first request is in flight. */
  response_status: number | null;
  response_content_type: string | null;
  response_body: string | null;
  created_at: CreatedAt;
  /** The conversation the request was about (its path names it): erasing the conversation erases the stored response. */
  conversation_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface ChannelsTable {
  id: string;
  account_id: string;
  name: string;
  email_address: string;
  /** SHA-256 of the secret the mail forwarder that POSTs inbound mail sends; the secret is shown once. */
  forwarder_secret_hash: string;
  enabled: Generated<boolean>;
  greeting_enabled: Generated<boolean>;
  greeting_text: string | null;
  csat_enabled: Generated<boolean>;
  csat_delay_seconds: Generated<number>;
  csat_link_validity_seconds: Generated<number>;
  /** Larger attachments are recorded with their metadata and a note, without their bytes. */
  max_attachment_bytes: Generated<number>;
  /** Files one agent reply carries at most, and what they weigh together at most. */
  max_reply_attachments: Generated<number>;
  max_reply_attachment_bytes: Generated<number>;
  created_at: CreatedAt;
  imap_enabled: Generated<boolean>;
  imap_host: string | null;
  imap_port: number | null;
  imap_tls: Generated<boolean>;
  imap_username: string | null;
  /** AES-GCM ciphertext (src/security/credentials.ts); the password itself is never stored. */
  imap_password_encrypted: string | null;
  imap_folders: Json<string[]>;
  imap_after_processing: Generated<ImapAfterProcessing>;
  imap_move_to_folder: string | null;
  imap_poll_interval_seconds: Generated<number>;
  /** Larger mail is kept raw but quarantined instead of parsed. */
  max_inbound_bytes: Generated<number>;
  /** Loop safety: automatic mails (greeting, survey) one recipient may get per hour. */
  automatic_mail_limit_per_hour: Generated<number>;
  business_hours_enabled: Generated<boolean>;
  business_hours: ColumnType<BusinessHours | null, string | null | undefined, string | null>;
  out_of_office_text: string | null;
  /** Whether the AI agent answers while business hours are closed. */
  ai_outside_business_hours: Generated<boolean>;
  /** Below this confidence the AI agent hands over to humans. */
  ai_confidence_threshold: Generated<number>;
  /** AI answers without resolution before it hands over. */
  ai_max_turns: Generated<number>;
  /** Languages customers write in (ISO 639-1): escalation phrases are recognised in these. */
  languages: Json<string[]>;
  assignment_strategy: Generated<AssignmentStrategy>;
  /** Open conversations an agent takes on this channel unless they have their own capacity; null = unlimited. */
  default_agent_capacity: number | null;
  /** First-response target in business time; null = no SLA. */
  sla_first_response_seconds: number | null;
  /** Quiet period after resolution after which the conversation closes. */
  close_after_seconds: Generated<number>;
  /** The forwarding address username@subdomain.<INBOUND_DOMAIN>: set once, then immutable (A8). */
  forwarding_username: string | null;
  forwarding_subdomain: string | null;
  /** Subject of outgoing mail; may hold {{conversation.started_at}}. Null = "Re: <conversation subject>". */
  default_subject: string | null;
  /** From name of outgoing mail; may hold {{agent.name}}. Null = "<agent> (<channel>)", the channel name for automatic mail. */
  from_name: string | null;
  /** The channel's own SMTP server; a null host means the deployment's (SMTP_URL). */
  smtp_host: string | null;
  smtp_port: number | null;
  smtp_secure: Generated<boolean>;
  smtp_username: string | null;
  /** AES-GCM ciphertext like the IMAP password. */
  smtp_password_encrypted: string | null;
  /** Removed: takes no mail, leaves every list; its conversations stay readable. */
  deleted_at: Timestamp | null;
  /** Authentication-Results of these authserv-ids are believed; `*.example.net` matches its subdomains. */
  trusted_authserv_ids: Json<string[]>;
  /** Microsoft 365 writes Authentication-Results without an authserv-id: believe the topmost one. */
  trust_unnamed_authentication_results: Generated<boolean>;
  /** X-Spam-Flag, X-Spam-Status, rspamd's and Microsoft's verdicts: a yes counts as spam. */
  trust_spam_headers: Generated<boolean>;
  /** Loop and flood safety: automatic mails per hour to one recipient domain, and from the channel in all. */
  automatic_mail_limit_per_domain_per_hour: Generated<number>;
  automatic_mail_limit_per_channel_per_hour: Generated<number>;
  /** Days of existing mail the first sync of a folder imports; 0 starts at the folder's end. */
  imap_import_days: Generated<number>;
  /** How the channel logs in to its IMAP and SMTP servers: a password, or an OAuth 2.0 access token (mailbox_oauth_grants). */
  imap_auth: Generated<MailServerAuth>;
  smtp_auth: Generated<MailServerAuth>;
  /** Where outgoing mail is copied and mailbox replies are read; null: the folder the server marks \Sent. */
  imap_sent_folder: string | null;
  /** Which kinds of outgoing mail are copied to the Sent folder. */
  sent_copy_kinds: Json<SentCopyKind[]>;
  /** Whether replies written in the mailbox (found in its Sent folder) are recorded in their conversations. */
  record_mailbox_replies: Generated<boolean>;
  /** Undo send: how long an agent's reply waits before it goes out (0 to 30 s). */
  undo_send_seconds: Generated<number>;
  /** The channel's signature (templated: {{agent.name}}, {{channel.name}}); the agent's own comes first when set. */
  signature_text: ColumnType<string | null, string | null | undefined, string | null>;
  signature_html: ColumnType<string | null, string | null | undefined, string | null>;
  /** The greeting and out-of-office texts per language (ISO 639-1), beside the one text for every language. */
  greeting_texts: ColumnType<Record<string, string>, string | undefined, string>;
  out_of_office_texts: ColumnType<Record<string, string>, string | undefined, string>;
}

export type ImapAfterProcessing = 'none' | 'mark_seen' | 'move';

export interface ImapCursorsTable {
  channel_id: string;
  folder: string;
  /** bigint columns come back as strings from pg. */
  uid_validity: ColumnType<string, string | number | bigint, string | number | bigint>;
  last_uid: ColumnType<string, string | number | bigint | undefined, string | number | bigint>;
  /** When the folder was first synced: its mail from before then is imported history (no automatic mail). */
  imported_before: Timestamp | null;
  /** The folder's last UID when first synced or renumbered: mail up to it is history, mail above it is new. */
  history_last_uid: ColumnType<string | null, string | number | bigint | null | undefined, string | number | bigint | null>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface ChannelAgentsTable {
  channel_id: string;
  user_id: string;
  /** Round robin hands the next conversation to the agent who waited longest. */
  last_assigned_at: Timestamp | null;
  /** Open conversations this agent takes on the channel; null = the channel's default. */
  capacity: number | null;
  created_at: CreatedAt;
}

export interface TeamsTable {
  id: string;
  account_id: string;
  name: string;
  created_at: CreatedAt;
}

export interface TeamMembersTable {
  team_id: string;
  user_id: string;
}

export interface AiAgentsTable {
  id: string;
  channel_id: string;
  name: string;
  enabled: Generated<boolean>;
  position: number;
  provider: AiProviderKind;
  /** Overrides AI_MODEL for an OpenAI-compatible provider. */
  model: string | null;
  created_at: CreatedAt;
}

export interface KnowledgeArticlesTable {
  id: string;
  channel_id: string;
  title: string;
  body: string;
  created_at: CreatedAt;
}

export interface RoutingRulesTable {
  id: string;
  channel_id: string;
  position: number;
  name: string;
  conditions: Json<RoutingCondition[]>;
  actions: Json<RoutingActions>;
  created_at: CreatedAt;
}

export interface ContactsTable {
  id: string;
  account_id: string;
  /** Lower-cased address, unique per account; null until known (a web form without one): no mail goes out before (A3). */
  email: string | null;
  name: string | null;
  /** Facts about the contact that routing rules may test (plan, country, ...). */
  attributes: Json<Record<string, string | number | boolean | null>>;
  created_at: CreatedAt;
  /** Unsubscribed from survey mail (one click, RFC 8058): no further survey goes to this contact. */
  surveys_unsubscribed_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** An admin asked to erase the contact: from then on it is an anonymous tombstone, its erasure under way. */
  erasure_requested_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** Every conversation, message and workflow of the contact is gone; the row stays for reports, without address or name. */
  erased_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface ConversationsTable {
  id: string;
  account_id: string;
  channel_id: string;
  contact_id: string;
  subject: string;
  status: ConversationStatus;
  stage: ConversationStage;
  assignee_id: string | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
  resolved_at: Timestamp | null;
  /** Unguessable; replies to `local+<token>@domain` of the channel address find this conversation. */
  reply_token: Generated<string>;
  priority: Generated<Priority>;
  labels: Json<string[]>;
  /** Set by a routing rule: only the team's members are assigned. */
  team_id: string | null;
  /** The AI agent handling (or that handled) the conversation. */
  ai_agent_id: string | null;
  /** Set while waiting for an agent: the queue is served by priority, then oldest first. */
  queued_at: Timestamp | null;
  /** The first reply by a human agent: what the SLA measures. */
  first_response_at: Timestamp | null;
  sla_due_at: Timestamp | null;
  sla_breached_at: Timestamp | null;
  closed_at: Timestamp | null;
  /** The customer's language (ISO 639-1), detected from the first mail or set by an agent; null: the channel's first. */
  language: ColumnType<string | null, string | null | undefined, string | null>;
  /** Erased (contact erasure or retention): an anonymous tombstone that reports count, hidden everywhere else. */
  erased_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface InboundMessagesTable {
  id: string;
  channel_id: string;
  /** The Message-ID header, or a content hash when the header is missing: the dedupe key. */
  message_id: string;
  /**
   * The mail exactly as received; pg reads it back as a Buffer, PGlite as a Uint8Array. Null only for
   * IMAP mail quarantined by its size before the download (source_* say where to fetch it).
   */
  raw: ColumnType<Uint8Array | null, Uint8Array | null, Uint8Array>;
  size_bytes: number;
  status: InboundStatus;
  rejection_reason: string | null;
  conversation_id: string | null;
  classification: MailClassification | null;
  from_address: string | null;
  from_name: string | null;
  subject: string | null;
  text_body: string | null;
  /** Sanitized on the server: safe to show. */
  html_body: string | null;
  /** The new part of text_body, without the quoted history. */
  reply_text: string | null;
  /** Lower-cased addresses. */
  to_addresses: Json<string[]>;
  cc_addresses: Json<string[]>;
  /** A bounce's original message, by Message-ID. */
  returned_message_id: string | null;
  in_reply_to: string | null;
  reference_ids: Json<string[]>;
  sent_at: Timestamp | null;
  received_at: CreatedAt;
  /** Set once the conversation workflow has been signalled: the message is then acknowledged. */
  signalled_at: Timestamp | null;
  received_via: ColumnType<InboundSource, InboundSource | undefined, InboundSource>;
  sender_verdict: SenderVerdictKind | null;
  /** Why the verdict is not ordinary, one line each, as agents read them. */
  sender_verdict_reasons: Json<string[]>;
  /** Existing mail a mailbox import brought in: stored and threaded, never answered automatically. */
  imported: Generated<boolean>;
  source_folder: string | null;
  source_uid_validity: ColumnType<string | null, string | number | bigint | null | undefined, string | number | bigint | null>;
  source_uid: ColumnType<string | null, string | number | bigint | null | undefined, string | number | bigint | null>;
  /** A reconciler pass resuming this stored mail holds it until then; another pass leaves it alone meanwhile. */
  resume_claimed_until: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export type MailboxExportFormat = 'mbox' | 'maildir';
/** pg reads bigint as a string, PGlite as a number. */
type BigCount = ColumnType<string | number, number | undefined, number>;

/** A mail of an export that could not be stored (too large, refused by the database), as the import reports it. */
export interface NotImportedMail {
  /** Where it starts in the (unpacked) mbox, or its tar entry's index and name. */
  offset?: number;
  entry?: number;
  name?: string;
  sizeBytes: number;
  messageId: string | null;
  reason: string;
}

/** An uploaded mailbox export and how far its import has come. */
export interface MailboxImportsTable {
  id: string;
  account_id: string;
  channel_id: string;
  state: MailboxImportState;
  /** Null for a gzip whose content is recognised when it is read. */
  format: MailboxExportFormat | null;
  compressed: boolean;
  bytes_total: BigCount;
  bytes_processed: BigCount;
  /** Where the next mail starts in the (unpacked) mbox, or the next entry's first header in the (unpacked) tar. */
  resume_offset: BigCount;
  /** The index of the next tar entry (to name entries in the report). */
  resume_entry: Generated<number>;
  mails_imported: Generated<number>;
  mails_duplicate: Generated<number>;
  mails_rejected: Generated<number>;
  entries_skipped: Generated<number>;
  not_imported: Json<NotImportedMail[]>;
  failure_reason: string | null;
  cancel_requested_at: Date | null;
  created_at: CreatedAt;
  started_at: Date | null;
  finished_at: Date | null;
}

/** The export itself, in pieces of equal size (but the last), in order. */
export interface MailboxImportPiecesTable {
  import_id: string;
  position: number;
  /** pg reads it as a Buffer, PGlite as a Uint8Array. */
  data: Uint8Array;
}

export interface OutboundMessagesTable {
  /** Chosen by the workflow, so a retried send finds the same row. */
  id: string;
  conversation_id: string;
  kind: OutboundKind;
  message_id: string;
  author_id: string | null;
  /** The AI agent that wrote an AI answer or a handover note. */
  ai_agent_id: ColumnType<string | null, string | null | undefined, string | null>;
  /** Null only on mail written before the name was stored with it. */
  from_name: ColumnType<string | null, string | null | undefined, string | null>;
  from_address: string;
  to_address: string;
  subject: string;
  text_body: string;
  in_reply_to: string | null;
  reference_ids: Json<string[]>;
  /** The channel address with the conversation's reply token: replies find their conversation by it. */
  reply_to: string | null;
  created_at: CreatedAt;
  sent_at: Timestamp | null;
  delivery_status: ColumnType<DeliveryStatus, DeliveryStatus | undefined, DeliveryStatus>;
  /** Failed or bounced: the server's reply or the delivery report's diagnostic; queued: why the last attempt did not go out. */
  delivery_error: ColumnType<string | null, string | null | undefined, string | null>;
  /** A send holds the row until then (and by its token): a retry meanwhile sends nothing. */
  claimed_until: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  claim_token: ColumnType<string | null, string | null | undefined, string | null>;
  /** The message exactly as SMTP took it (set by the first send attempt, resent as is): what the Sent copy appends. */
  mime: ColumnType<Uint8Array | null, Uint8Array | null | undefined, Uint8Array | null>;
  /** Its copy in the mailbox's Sent folder; null: not copied (no IMAP mailbox, a kind the channel does not copy). */
  sent_copy_status: ColumnType<SentCopyStatus | null, SentCopyStatus | null | undefined, SentCopyStatus | null>;
  sent_copy_folder: ColumnType<string | null, string | null | undefined, string | null>;
  sent_copy_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  sent_copy_error: ColumnType<string | null, string | null | undefined, string | null>;
  /** A mailbox session appending the copy holds it until then. */
  sent_copy_claimed_until: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** Who else gets the mail (lower-cased single mailboxes); Bcc is in the envelope only, never in a header. */
  cc_addresses: ColumnType<string[], string | undefined, string>;
  bcc_addresses: ColumnType<string[], string | undefined, string>;
  /** An agent's HTML reply, sanitized as inbound HTML is; the text part is derived from it. */
  html_body: ColumnType<string | null, string | null | undefined, string | null>;
  /** A reply held back (undo grace period, send later) goes out then, unless cancelled first. */
  scheduled_for: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  cancelled_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** The agent who undid it; null when it was cancelled because the customer wrote first. */
  cancelled_by: ColumnType<string | null, string | null | undefined, string | null>;
  cancel_reason: ColumnType<string | null, string | null | undefined, string | null>;
  /** The signature below the body, as sent (text and HTML). */
  signature_text: ColumnType<string | null, string | null | undefined, string | null>;
  signature_html: ColumnType<string | null, string | null | undefined, string | null>;
  /** Survey mail: the one-click unsubscribe URL (List-Unsubscribe, RFC 8058). */
  list_unsubscribe: ColumnType<string | null, string | null | undefined, string | null>;
}

/** An account's webhook: where and which events go, signed with its secret (AES-256-GCM under SECRET_KEY). */
export interface WebhookSubscriptionsTable {
  id: string;
  account_id: string;
  url: string;
  description: string | null;
  events: Json<string[]>;
  secret_encrypted: string;
  enabled: ColumnType<boolean, boolean | undefined, boolean>;
  disabled_reason: string | null;
  disabled_at: Date | null;
  /** The first failed attempt since the last success; null while it succeeds. */
  failing_since: Date | null;
  last_failure: string | null;
  /** While it is failing, no lane tries it before this (one probe at a time for all its conversations). */
  next_attempt_at: Date | null;
  created_at: CreatedAt;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export type WebhookDeliveryStatus = 'pending' | 'delivered' | 'failed';

/** One event for one subscription (the transactional outbox); its id is the webhook-id the receiver dedupes on. */
export interface WebhookDeliveriesTable {
  id: string;
  seq: Generated<string>;
  subscription_id: string;
  account_id: string;
  conversation_id: string;
  event_type: string;
  payload: Json<Record<string, unknown>>;
  status: ColumnType<WebhookDeliveryStatus, WebhookDeliveryStatus | undefined, WebhookDeliveryStatus>;
  attempts: ColumnType<number, number | undefined, number>;
  last_status_code: number | null;
  last_error: string | null;
  /** Given up after this; set at the first attempt, cleared by a redelivery. */
  retry_until: Date | null;
  /** Until when its lane's workflow has it; null or long past: the dispatcher hands it over (again). */
  dispatched_until: Date | null;
  delivered_at: Date | null;
  created_at: CreatedAt;
}

export interface WebhookAttemptsTable {
  id: string;
  delivery_id: string;
  attempted_at: CreatedAt;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

/** An agent writing a reply in a conversation, until expires_at unless renewed (the collision guard shows it). */
export interface DraftLeasesTable {
  conversation_id: string;
  user_id: string;
  since: ColumnType<Date, Date | string | undefined, Date | string>;
  expires_at: ColumnType<Date, Date | string, Date | string>;
}

/** A mailbox's Sent folder, read for replies written there, above this UID. */
export interface SentFolderCursorsTable {
  channel_id: string;
  folder: string;
  uid_validity: ColumnType<string, string | number | bigint, string | number | bigint>;
  last_uid: ColumnType<string, string | number | bigint, string | number | bigint>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

/** A file of an agent's reply: uploaded (waiting for a reply while outbound_message_id is null) or forwarded. */
export interface ReplyAttachmentsTable {
  id: string;
  conversation_id: string;
  outbound_message_id: ColumnType<string | null, string | null | undefined, string | null>;
  uploaded_by: string | null;
  source_attachment_id: ColumnType<string | null, string | null | undefined, string | null>;
  position: Generated<number>;
  filename: string;
  content_type: string;
  size_bytes: number;
  sha256: string | null;
  /** pg reads it as a Buffer, PGlite as a Uint8Array. */
  content: Uint8Array;
  /** False while an upload is being streamed in. */
  complete: Generated<boolean>;
  created_at: CreatedAt;
}

export interface AttachmentsTable {
  id: string;
  inbound_message_id: string;
  position: number;
  filename: string;
  content_type: string;
  size_bytes: number;
  /** Without angle brackets, as `cid:` links in the HTML name it. */
  content_id: string | null;
  inline: Generated<boolean>;
  sha256: string;
  /** Null when omitted, with the reason in omitted_reason; pg reads it back as a Buffer, PGlite as a Uint8Array. */
  content: ColumnType<Uint8Array | null, Uint8Array | null, never>;
  omitted_reason: string | null;
  created_at: CreatedAt;
}

export interface ConversationEventsTable {
  id: Generated<string>;
  conversation_id: string;
  type: string;
  data: Json<Record<string, unknown>>;
  created_at: CreatedAt;
}

export interface CsatSurveysTable {
  id: string;
  conversation_id: string;
  outbound_message_id: string | null;
  expires_at: Timestamp;
  rating: number | null;
  comment: string | null;
  rated_at: Timestamp | null;
  /** Who resolved the conversation (a human or an AI agent): the CSAT report groups by them. */
  agent_id: ColumnType<string | null, string | null | undefined, string | null>;
  ai_agent_id: ColumnType<string | null, string | null | undefined, string | null>;
  channel_id: ColumnType<string | null, string | null | undefined, string | null>;
  created_at: CreatedAt;
}

/** What an activity execution did, kept with its effects so that a retry does not do it again (src/activities/once.ts). */
export interface ActivityEffectsTable {
  key: string;
  result: Json<unknown>;
  created_at: CreatedAt;
}

/** How one of a channel's mail paths is doing: its last success, its last failure, and since when it fails. */
export interface ChannelHealthTable {
  channel_id: string;
  path: string;
  last_success_at: Date | null;
  last_error_at: Date | null;
  last_error_reason: string | null;
  last_error_message: string | null;
  failing_since: Date | null;
}

/** A provider's request to confirm forwarding to a channel's forwarding address (Gmail's code and link), for its admins. */
export interface ForwardingConfirmationsTable {
  id: string;
  channel_id: string;
  inbound_message_id: string;
  /** Who sent it, e.g. `gmail`. */
  provider: string;
  sender: string;
  subject: string;
  /** The mailbox that asked to forward here, as the confirmation names it. */
  requested_by: string | null;
  confirmation_code: string | null;
  /** Only ever a link to the provider's own settings host. */
  confirmation_url: string | null;
  /** When it was received. */
  created_at: CreatedAt;
}

export type MailServerAuth = 'password' | 'oauth2';
export type OAuthProviderName = 'google' | 'microsoft' | 'generic';
export type OAuthGrantState = 'connected' | 'reauthorization_required';

/** A channel's OAuth 2.0 grant for its mailbox: the refresh token (encrypted), the current access token, the state. */
export interface MailboxOAuthGrantsTable {
  channel_id: string;
  provider: OAuthProviderName;
  /** Discovered at each use (presets and generic providers with an issuer); null: token_endpoint as given. */
  issuer: string | null;
  token_endpoint: string | null;
  revocation_endpoint: string | null;
  client_id: string;
  /** Null: the deployment's secret for this provider, or none (a public client). */
  client_secret_encrypted: string | null;
  scopes: string;
  /** The mailbox's address, the user name of IMAP and SMTP logins. */
  account: string;
  refresh_token_encrypted: string;
  access_token_encrypted: string | null;
  access_token_expires_at: Date | null;
  token_refusals: Generated<number>;
  state: Generated<OAuthGrantState>;
  /** The provider's (or the mail server's) reason for reauthorization_required, bounded. */
  reason: string | null;
  state_since: ColumnType<Date, Date | string | undefined, Date | string>;
  connected_at: ColumnType<Date, Date | string | undefined, Date | string>;
  refreshed_at: Date | null;
  refresh_count: Generated<number>;
}

/** An authorization an admin started: the provider's callback finishes it once, within minutes. */
export interface OAuthAuthorizationsTable {
  id: string;
  state_hash: string;
  user_id: string;
  channel_id: string;
  code_verifier_encrypted: string;
  nonce: string;
  connection: ColumnType<unknown, string, string>;
  expires_at: Timestamp;
  used_at: Date | null;
  created_at: CreatedAt;
}

export interface Database {
  accounts: AccountsTable;
  users: UsersTable;
  api_keys: ApiKeysTable;
  idempotency_keys: IdempotencyKeysTable;
  channels: ChannelsTable;
  channel_agents: ChannelAgentsTable;
  teams: TeamsTable;
  team_members: TeamMembersTable;
  ai_agents: AiAgentsTable;
  knowledge_articles: KnowledgeArticlesTable;
  routing_rules: RoutingRulesTable;
  contacts: ContactsTable;
  conversations: ConversationsTable;
  inbound_messages: InboundMessagesTable;
  mailbox_imports: MailboxImportsTable;
  mailbox_import_pieces: MailboxImportPiecesTable;
  attachments: AttachmentsTable;
  reply_attachments: ReplyAttachmentsTable;
  outbound_messages: OutboundMessagesTable;
  draft_leases: DraftLeasesTable;
  conversation_events: ConversationEventsTable;
  csat_surveys: CsatSurveysTable;
  imap_cursors: ImapCursorsTable;
  sent_folder_cursors: SentFolderCursorsTable;
  activity_effects: ActivityEffectsTable;
  channel_health: ChannelHealthTable;
  mailbox_oauth_grants: MailboxOAuthGrantsTable;
  oauth_authorizations: OAuthAuthorizationsTable;
  forwarding_confirmations: ForwardingConfirmationsTable;
  webhook_subscriptions: WebhookSubscriptionsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
}

export type Channel = Selectable<ChannelsTable>;
export type Conversation = Selectable<ConversationsTable>;
export type InboundMessage = Selectable<InboundMessagesTable>;
export type Attachment = Selectable<AttachmentsTable>;
export type OutboundMessage = Selectable<OutboundMessagesTable>;
export type NewOutboundMessage = Insertable<OutboundMessagesTable>;
export type User = Selectable<UsersTable>;
