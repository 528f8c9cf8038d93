import { proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';

// Erasing a contact is a workflow so that it finishes whatever happens half-way (a worker dies, the database or
// Temporal is away): each step may run again and does nothing twice. Its history holds ids and counts only.

const erasure = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '1 minute',
  // Erasure must finish: an outage is waited out, however long it lasts.
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes' },
});

export interface ContactErasureInput {
  contactId: string;
}

export interface ContactErasureResult {
  /** False when there was no such contact. */
  found: boolean;
  conversations: number;
}

/** Conversations erased per activity: a contact with thousands of them heartbeats, retries and reports in small steps. */
const CONVERSATIONS_PER_STEP = 25;

/**
 * Erases a contact: first their address and name (so that new mail from them starts a new contact, and mail to
 * their conversations' reply tokens finds nothing), then each conversation's messages, files, timeline and
 * workflow runs, then marks the contact erased. What stays is an anonymous tombstone that reports count.
 */
export async function contactErasure({ contactId }: ContactErasureInput): Promise<ContactErasureResult> {
  setCurrentDetails('Removing the address and name of the contact');
  const { found } = await erasure.tombstoneContact.executeWithOptions(
    { summary: 'Remove the address and name, cut the conversations off from new mail' },
    [{ contactId }],
  );
  if (!found) return { found: false, conversations: 0 };
  let conversations = 0;
  let after: string | null = null;
  for (;;) {
    setCurrentDetails(`Erasing the conversations of the contact: ${conversations} done`);
    const step: { erased: number; last: string | null } = await erasure.eraseContactConversations.executeWithOptions(
      {
        summary: `Erase conversations ${conversations + 1}–${conversations + CONVERSATIONS_PER_STEP}: messages, files, workflows`,
      },
      [{ contactId, after, limit: CONVERSATIONS_PER_STEP }],
    );
    conversations += step.erased;
    if (step.last === null) break;
    after = step.last;
  }
  await erasure.completeContactErasure.executeWithOptions({ summary: 'Mark the contact erased' }, [{ contactId }]);
  setCurrentDetails(`Erased, with ${conversations} conversations`);
  return { found: true, conversations };
}
