// Workflow ids and the task queue, named in one place so the API, the ingest and the worker agree.

export const TASK_QUEUE = 'mailroom';

/**
 * The queue of the IMAP mailbox sessions (and mailbox imports) that go with a main queue: a session holds its
 * activity slot for minutes of IDLE, an import for as long as it reads, so they run on a worker of their own and
 * never take the slots of conversation activities.
 */
export function mailboxTaskQueue(taskQueue: string): string {
  return `${taskQueue}-mailbox`;
}

export function conversationWorkflowId(conversationId: string): string {
  return `conversation-${conversationId}`;
}

export function mailboxWorkflowId(channelId: string): string {
  return `mailbox-${channelId}`;
}

export function assignmentQueueWorkflowId(channelId: string): string {
  return `assignment-queue-${channelId}`;
}

/** One reconciler per task queue: every worker of the queue starts it, and the first start is the one that runs. */
export function mailReconcilerWorkflowId(taskQueue: string): string {
  return `mail-reconciler-${taskQueue}`;
}

export function mailboxImportWorkflowId(importId: string): string {
  return `mailbox-import-${importId}`;
}

/** One erasure per contact: asking again while it runs joins it. */
export function contactErasureWorkflowId(contactId: string): string {
  return `contact-erasure-${contactId}`;
}

/** The daily retention sweep's schedule, one per task queue; its runs are named after it. */
export function retentionScheduleId(taskQueue: string): string {
  return `retention-sweep-${taskQueue}`;
}

/**
 * The queue of webhook attempts that goes with a main queue: a subscriber that answers slowly holds a slot for
 * up to its timeout, so the attempts have slots of their own and never take a conversation's or a mailbox's.
 */
export function webhookTaskQueue(taskQueue: string): string {
  return `${taskQueue}-webhooks`;
}

/** One dispatcher per task queue hands committed webhook deliveries to their lanes. */
export function webhookDispatcherWorkflowId(taskQueue: string): string {
  return `webhook-dispatcher-${taskQueue}`;
}

/** One lane per subscription and conversation: its deliveries go out one at a time, in order. */
export function webhookLaneWorkflowId(subscriptionId: string, conversationId: string): string {
  return `webhook-${subscriptionId}-${conversationId}`;
}
