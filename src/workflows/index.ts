// The workflow bundle's entry: every workflow the worker runs.
export { conversationWorkflow } from './conversation.js';
export { mailboxWorkflow } from './mailbox.js';
export { assignmentQueueWorkflow } from './assignment-queue.js';
