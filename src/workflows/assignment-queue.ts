import {
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { conversationWorkflowId } from './ids.js';
import { assignmentChangedSignal, rebalanceSignal, type RebalanceInput } from './messages.js';

const db = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

export interface AssignmentQueueWorkflowInput {
  channelId: string;
  /** Requests handed over by continue-as-new. */
  pending?: RebalanceInput[];
}

// With nothing to do for this long the workflow ends; the next change starts it again (signalWithStart).
const IDLE_BEFORE_ENDING = '10 minutes';

/**
 * Serves one channel's queue whenever agent capacity changes through the API: an agent joins,
 * becomes available, gets more capacity (their free slots go to waiting conversations at once), or
 * leaves or becomes unavailable (their open conversations go to others). Each conversation it
 * changes is told by signal, durably, and reads its assignment again.
 */
export async function assignmentQueueWorkflow({ channelId, pending }: AssignmentQueueWorkflowInput): Promise<void> {
  const requests: RebalanceInput[] = [...(pending ?? [])];
  setHandler(rebalanceSignal, (request) => {
    requests.push(request);
  });

  while (!workflowInfo().continueAsNewSuggested) {
    setCurrentDetails('Waiting for a change in agent capacity');
    if (!(await condition(() => requests.length > 0, IDLE_BEFORE_ENDING))) break;
    const batch = requests.splice(0);
    const changed = new Map<string, string>();
    for (const { reason, takeBackFromUserId } of batch) {
      if (!takeBackFromUserId) continue;
      const taken = await db.takeBackConversations.executeWithOptions({ summary: `Take back open conversations: ${reason}` }, [
        { channelId, userId: takeBackFromUserId },
      ]);
      for (const id of taken) changed.set(id, reason);
    }
    const reasons = [...new Set(batch.map((request) => request.reason))].join('; ');
    const { othersAssigned } = await db.assignFromQueue.executeWithOptions({ summary: `Serve the queue: ${reasons}` }, [
      { channelId },
    ]);
    for (const id of othersAssigned) changed.set(id, reasons);
    for (const [conversationId, reason] of changed) {
      try {
        await getExternalWorkflowHandle(conversationWorkflowId(conversationId)).signal(assignmentChangedSignal, { reason });
      } catch {
        // That conversation's workflow has ended; it reads its assignment when it starts again.
      }
    }
  }
  await condition(allHandlersFinished);
  if (requests.length > 0 || workflowInfo().continueAsNewSuggested) {
    await continueAsNew<typeof assignmentQueueWorkflow>({ channelId, pending: requests });
  }
}
