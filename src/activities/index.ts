import { createConversationActivities } from './conversation.js';
import type { ActivityDeps } from './deps.js';
import { createMailActivities } from './mail.js';
import { createMailboxActivities } from './mailbox.js';

export type { ActivityDeps } from './deps.js';

/** Every activity the worker registers, built over injected dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createConversationActivities(deps),
    ...createMailActivities(deps),
    ...createMailboxActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
