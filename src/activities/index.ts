import { createAiActivities } from './ai.js';
import { createAssignmentActivities } from './assignment.js';
import { createConversationActivities } from './conversation.js';
import type { ActivityDeps } from './deps.js';
import { createErasureActivities } from './erasure.js';
import { createMailActivities } from './mail.js';
import { createMailboxActivities } from './mailbox.js';
import { createMailboxImportActivities } from './mailbox-import.js';
import { createReconcileActivities } from './reconcile.js';
import { createReplyTimingActivities } from './reply-timing.js';
import { createRoutingActivities } from './routing.js';
import { createWebhookActivities } from './webhooks.js';

export type { ActivityDeps } from './deps.js';

/** Every activity the worker registers, built over injected dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createConversationActivities(deps),
    ...createRoutingActivities(deps),
    ...createAssignmentActivities(deps),
    ...createAiActivities(deps),
    ...createMailActivities(deps),
    ...createMailboxActivities(deps),
    ...createMailboxImportActivities(deps),
    ...createReconcileActivities(deps),
    ...createReplyTimingActivities(deps),
    ...createErasureActivities(deps),
    ...createWebhookActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
