import type { SenderVerdictKind } from './sender-verdict.js';

// The words a conversation is told in, shared by the database schema, the workflows, the activities
// and the API: where it stands, who acts, what kind of mail it is.

/** Where a conversation stands, as the Temporal UI, the database row and the API show it. */
export const CONVERSATION_STAGES = [
  'triage',
  'ai',
  'waiting_for_hours',
  'queued',
  'assigned',
  'resolved',
  'csat',
  'closed',
  'spam',
] as const;
export type ConversationStage = (typeof CONVERSATION_STAGES)[number];

/** The coarse state backend services filter by; each stage belongs to one. */
export const CONVERSATION_STATUSES = ['open', 'resolved', 'closed', 'spam'] as const;
export type ConversationStatus = (typeof CONVERSATION_STATUSES)[number];

const OPEN_STAGES: ReadonlySet<ConversationStage> = new Set(['triage', 'ai', 'waiting_for_hours', 'queued', 'assigned']);

/** Someone (the AI agent or people) still has to act on it. */
export function isOpenStage(stage: ConversationStage): boolean {
  return OPEN_STAGES.has(stage);
}

export function statusOfStage(stage: ConversationStage): ConversationStatus {
  if (isOpenStage(stage)) return 'open';
  if (stage === 'spam' || stage === 'closed') return stage;
  return 'resolved'; // resolved, and csat: resolved with the survey out
}

/** An open conversation people handle: with its agent, or in the queue until one has capacity. */
export function openStageOf(assignee: Actor | null): 'assigned' | 'queued' {
  return assignee ? 'assigned' : 'queued';
}

/** Who does something, by id and by the name people read in the Temporal UI. */
export interface Actor {
  id: string;
  name: string;
}

/** Who resolved a conversation: an agent (user) or an AI agent. */
export interface ResolvedBy {
  kind: 'agent' | 'ai_agent';
  id: string;
}

export type UserRole = 'admin' | 'agent';

/** What a mail is, judged from its headers: written by a person, an auto-reply, or a bounce. */
export const MAIL_CLASSIFICATIONS = ['ordinary', 'auto_reply', 'bounce'] as const;
export type MailClassification = (typeof MAIL_CLASSIFICATIONS)[number];

export type { SenderVerdictKind } from './sender-verdict.js';

/**
 * How a mail reached Mailroom: posted by a forwarder, fetched from an IMAP mailbox, sent from the web form,
 * delivered to our own SMTP receiver (the forwarding address's MX), or read from an uploaded mailbox export.
 */
export const INBOUND_SOURCES = ['forwarder', 'imap', 'form', 'smtp', 'import'] as const;
export type InboundSource = (typeof INBOUND_SOURCES)[number];

/** What ingest learned about a customer mail that the conversation acts on; handed to the workflow with the mail. */
export interface CustomerMessageFacts {
  inboundMessageId: string;
  classification: MailClassification;
  /** The customer asks to talk to a person (in one of the channel's languages). */
  asksForPerson: boolean;
  /** The customer says the answer solved their problem. */
  confirmsResolution: boolean;
  /** What the receiving server said about the sender; spam never counts as the customer writing. */
  senderVerdict?: SenderVerdictKind;
}

/** A person wrote it: not an auto-reply or a bounce, and not spam (which never reopens or wakes anything). */
export function isFromPerson(mail: Pick<CustomerMessageFacts, 'classification' | 'senderVerdict'>): boolean {
  return mail.classification === 'ordinary' && mail.senderVerdict !== 'spam';
}

/**
 * Outgoing mail of a conversation, by purpose: what Mailroom sends, and mailbox_reply, a reply someone wrote in
 * the channel's mailbox itself (found in its Sent folder), recorded and never sent by Mailroom.
 */
export const OUTBOUND_KINDS = [
  'greeting',
  'reply',
  'csat_survey',
  'out_of_office',
  'ai_reply',
  'handover',
  'mailbox_reply',
] as const;
export type OutboundKind = (typeof OUTBOUND_KINDS)[number];

/** The kinds Mailroom sends, each of which a channel may have copied to its mailbox's Sent folder. */
export const SENT_COPY_KINDS = ['greeting', 'reply', 'csat_survey', 'out_of_office', 'ai_reply', 'handover'] as const;
export type SentCopyKind = (typeof SENT_COPY_KINDS)[number];

/**
 * A sent mail's copy in the mailbox's Sent folder: pending (to be appended by the mailbox sync), appended,
 * failed (with the reason: no Sent folder), or found (a mailbox reply: it was there to begin with).
 */
export const SENT_COPY_STATUSES = ['pending', 'appended', 'failed', 'found'] as const;
export type SentCopyStatus = (typeof SENT_COPY_STATUSES)[number];

/**
 * Where an outgoing mail stands: queued (not out yet, or being retried), sent (the SMTP server took it),
 * failed (the server refused it for good) or bounced (a delivery report came back for it); an agent's
 * reply may first be scheduled (undo grace period, send later) and end cancelled instead of going out.
 */
export const DELIVERY_STATUSES = ['queued', 'sent', 'failed', 'bounced', 'scheduled', 'cancelled'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** Mail Mailroom sends on its own, which loop safety may hold back. */
export type AutomaticMailKind = 'greeting' | 'out_of_office' | 'csat_survey' | 'handover';
