// Workflow ids and the task queue, named in one place so the API, the ingest and the worker agree.

export const TASK_QUEUE = 'mailroom';

export function conversationWorkflowId(conversationId: string): string {
  return `conversation-${conversationId}`;
}

export function mailboxWorkflowId(channelId: string): string {
  return `mailbox-${channelId}`;
}

export function assignmentQueueWorkflowId(channelId: string): string {
  return `assignment-queue-${channelId}`;
}
