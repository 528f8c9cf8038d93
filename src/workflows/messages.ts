import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { Actor, ConversationStage, ConversationStatus, CustomerMessageFacts } from '../domain/conversation.js';

// Everything that talks to a running conversation: the API and the ingest import these,
// the workflow registers their handlers. One input object each, explicit names.

export interface InboundMessageInput {
  inboundMessageId: string;
  /** What ingest learned about the mail; absent in signals sent by earlier releases (the workflow reads them then). */
  facts?: Omit<CustomerMessageFacts, 'inboundMessageId'>;
}
/** A customer mail was stored and threaded into this conversation. */
export const inboundMessageSignal = defineSignal<[InboundMessageInput]>('inboundMessage');

export interface CsatRatingInput {
  surveyId: string;
  rating: number;
  comment: string | null;
}
/** The customer submitted the survey form. */
export const csatRatingSignal = defineSignal<[CsatRatingInput]>('csatRating');

export type { Actor } from '../domain/conversation.js';

export interface AgentReplyInput {
  author: Actor;
  text: string;
  /** Defaults to "Re: <conversation subject>". */
  subject?: string;
  /** What the reply carries beyond its text (HTML, Cc, Bcc, files), resolved by the API; passed to the outbox as is. */
  content?: ReplyContent;
  /** Undo send: the reply waits this long (the channel's grace period) before it goes out, unless undone. */
  undoSeconds?: number;
  /** Send later (epoch ms): the reply waits until then, and is cancelled when the customer writes first. */
  sendAt?: number;
  /** The collision guard: the reply is refused (ReplyCollision) when someone wrote since this message. */
  lastSeenMessageId?: string;
}
export interface ReplyContent {
  /** Another participant the reply is addressed to instead of the contact (lower-cased); the contact when left out. */
  to?: string;
  /** The agent's HTML (sanitized when drafted); `text` is derived from it when the agent typed none. */
  html?: string;
  /** Lower-cased single mailboxes: Cc (header and envelope) and Bcc (envelope only). */
  cc?: string[];
  bcc?: string[];
  /** Files the reply carries, in order: the agent's uploads in this conversation, or files of the customer's mail. */
  attachmentIds?: string[];
}
export interface AgentReplyResult {
  outboundMessageId: string;
  messageId: string;
  /** Set when the reply waits (undo grace period, send later): when it goes out unless cancelled. */
  scheduledFor?: string;
}
/** An agent answers the customer; resolves once the mail is sent. */
export const agentReplyUpdate = defineUpdate<AgentReplyResult, [AgentReplyInput]>('agentReply');

export interface CancelReplyInput {
  /** The reply's outbound message id. */
  outboxId: string;
  by: Actor;
}
export interface CancelReplyResult {
  status: 'cancelled';
}
/** An agent undoes a reply that still waits (undo grace period, send later); refused once it went out. */
export const cancelReplyUpdate = defineUpdate<CancelReplyResult, [CancelReplyInput]>('cancelReply');

export interface ResolveInput {
  resolvedBy: Actor;
}
export interface ResolveResult {
  status: ConversationStatus;
}
/** An agent marks the conversation resolved; the CSAT survey follows when the channel asks for it. */
export const resolveUpdate = defineUpdate<ResolveResult, [ResolveInput]>('resolve');

export interface AssignInput {
  /** The agent to assign, or null to put the conversation back into the queue for someone else. */
  assignee: Actor | null;
  by: Actor;
}
export interface AssignResult {
  assignee: Actor | null;
}
/** An agent or admin assigns the conversation by hand (or unassigns it). */
export const assignUpdate = defineUpdate<AssignResult, [AssignInput]>('assign');

export interface ReopenInput {
  /** The agent or admin who reopens it. */
  by: Actor;
}
export interface ReopenResult {
  status: ConversationStatus;
  /** Who has it again: the previous assignee, or null while it waits in the queue. */
  assignee: Actor | null;
}
/**
 * An agent reopens a resolved or closed conversation: back to the previous assignee. Sent with
 * update-with-start, so a closed conversation whose run has ended starts again for it.
 */
export const reopenUpdate = defineUpdate<ReopenResult, [ReopenInput]>('reopen');
/** What earlier releases sent with signalWithStart to reopen a closed conversation whose run had ended. */
export const reopenSignal = defineSignal<[ReopenInput]>('reopenRequested');

export interface NotSpamInput {
  /** The agent who released it from spam. */
  by: Actor;
}
/**
 * An agent says a conversation kept as spam is not: sent with signalWithStart after the database says
 * so (its run ends while it is spam), and it is routed like any new conversation.
 */
export const notSpamSignal = defineSignal<[NotSpamInput]>('notSpam');

export interface AssignmentChangedInput {
  /** Why, for the Temporal UI: "capacity freed on the channel", "Alice became unavailable". */
  reason: string;
}
/** The assignment was changed outside this workflow (the channel's queue was served): read it again. */
export const assignmentChangedSignal = defineSignal<[AssignmentChangedInput]>('assignmentChanged');

export interface ConversationSnapshot {
  conversationId: string;
  stage: ConversationStage;
  assigneeId: string | null;
  aiAgentId: string | null;
  slaBreached: boolean;
  pendingMessages: number;
  /** Customer mails the conversation has taken in, each once (absent from runs of the earlier workflow type). */
  mailsTaken?: number;
  /** The latest mail a person wrote. */
  lastCustomerMailId?: string | null;
}
export const conversationSnapshotQuery = defineQuery<ConversationSnapshot>('snapshot');

export interface RebalanceInput {
  reason: string;
  /** An agent who left the channel or became unavailable: their open conversations go to others. */
  takeBackFromUserId?: string;
}
/** Capacity on the channel changed (an agent joined, became available, got more capacity, or left): serve the queue. */
export const rebalanceSignal = defineSignal<[RebalanceInput]>('rebalance');

/** The channel's IMAP settings changed or IMAP was switched off: end the current session and re-read them. */
export const mailboxSettingsChangedSignal = defineSignal('mailboxSettingsChanged');

/**
 * An admin reprocesses mail that was quarantined by its size before the download: the current session ends,
 * and the next one downloads the requested mail by its UID.
 */
export const quarantinedMailRequestedSignal = defineSignal('quarantinedMailRequested');

/** A webhook lane has new deliveries (or a redelivery): take the next one if it is waiting. */
export const webhookWakeSignal = defineSignal('webhookWake');
