import { WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import { assignmentQueueWorkflow } from '../workflows/assignment-queue.js';
import { assignmentQueueWorkflowId, TASK_QUEUE } from '../workflows/ids.js';
import { rebalanceSignal, type RebalanceInput } from '../workflows/messages.js';
import { withTemporal } from './gateway.js';

/**
 * Tells the channel's assignment queue that agent capacity changed, starting it if it is idle. The
 * change is saved before this is called; when Temporal does not answer, repeating the request applies it.
 */
export async function requestRebalance(
  temporal: Client,
  channel: { id: string; name: string },
  request: RebalanceInput,
  taskQueue: string = TASK_QUEUE,
): Promise<void> {
  await withTemporal(
    temporal,
    () =>
      temporal.workflow.signalWithStart(assignmentQueueWorkflow, {
        workflowId: assignmentQueueWorkflowId(channel.id),
        taskQueue,
        args: [{ channelId: channel.id }],
        signal: rebalanceSignal,
        signalArgs: [request],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        staticSummary: `Assignment queue of channel '${channel.name}'`,
        staticDetails: `Channel ${channel.id}`,
      }),
    { whenAway: 'the change is saved; repeat the request so that conversations are reassigned' },
  );
}
