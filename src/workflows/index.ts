// The workflow bundle's entry: every workflow the worker runs.
export { conversationWorkflow } from './legacy/conversation-workflow.js';
export { mailboxWorkflow } from './mailbox.js';
export { assignmentQueueWorkflow } from './assignment-queue.js';
