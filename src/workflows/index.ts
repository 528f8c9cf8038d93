// The workflow bundle's entry: every workflow the worker runs.
export { customerConversation } from './conversation.js';
// Conversations started before the reshape run on until their next step, then go on as customerConversation.
export { conversationWorkflow } from './legacy/conversation-workflow.js';
export { mailboxWorkflow } from './mailbox.js';
export { assignmentQueueWorkflow } from './assignment-queue.js';
export { mailReconciler } from './reconciler.js';
export { mailboxImport } from './mailbox-import.js';
export { contactErasure } from './contact-erasure.js';
export { retentionSweep } from './retention-sweep.js';
export { webhookDispatcher, webhookLane } from './webhooks.js';
