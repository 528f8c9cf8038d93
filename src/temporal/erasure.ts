import { setTimeout as sleep } from 'node:timers/promises';
import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  WorkflowIdConflictPolicy,
  WorkflowIdReusePolicy,
  type Client,
  type WorkflowHandle,
  WorkflowNotFoundError,
} from '@temporalio/client';
import { contactErasure } from '../workflows/contact-erasure.js';
import { contactErasureWorkflowId, conversationWorkflowId, retentionScheduleId, TASK_QUEUE } from '../workflows/ids.js';
import { retentionSweep } from '../workflows/retention-sweep.js';
import { withTemporal } from './gateway.js';

// Erasure's part in Temporal: starting a contact's erasure, deleting a conversation's workflow runs (their
// histories hold the mail), and the daily retention sweep's schedule.

/** gRPC NOT_FOUND: the run is gone already. */
const NOT_FOUND = 5;
/** Deletions of runs that are still there (about 50 s of waiting) before the activity fails and is retried. */
const DELETE_ROUNDS = 14;

/**
 * Deletes every run of the conversation's workflow (a running one is terminated first by the server), the
 * continued-as-new runs before it included, and returns their run ids once none of them is left. Deleting again
 * finds nothing to delete.
 */
export async function deleteConversationWorkflows(
  client: Client,
  conversationId: string,
  /** Called while it waits for the server, e.g. to heartbeat. */
  waiting: () => void = () => undefined,
): Promise<string[]> {
  const workflowId = conversationWorkflowId(conversationId);
  const runIds = new Set<string>();
  // The id is ours (a uuid behind a fixed prefix): nothing to escape in the query.
  for await (const execution of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) runIds.add(execution.runId);
  // The newest run may not be listed yet (visibility lags the history).
  const newest = await describeRun(client, workflowId);
  if (newest) runIds.add(newest);
  if (runIds.size === 0) return [];
  let left = [...runIds];
  for (let round = 1; ; round++) {
    for (const runId of left) {
      try {
        await client.workflowService.deleteWorkflowExecution({
          namespace: client.options.namespace,
          workflowExecution: { workflowId, runId },
        });
      } catch (error) {
        // A run that completes while it is being deleted answers "already completed" (NOT_FOUND) and stays: looked at below.
        if (!isNotFound(error)) throw error;
      }
    }
    // The server deletes in the background, a run that just closed only once its closing is recorded everywhere:
    // wait until every run is gone, and delete again what is left.
    waiting();
    await sleep(Math.min(100 * 2 ** round, 5_000));
    const stillThere = [];
    for (const runId of left) if (await describeRun(client, workflowId, runId)) stillThere.push(runId);
    left = stillThere;
    if (left.length === 0) return [...runIds];
    if (round >= DELETE_ROUNDS) {
      throw new Error(`workflow runs ${left.join(', ')} of ${workflowId} are still there after ${round} deletions`);
    }
  }
}

/** The run's id if it exists (the newest run when none is named). */
async function describeRun(client: Client, workflowId: string, runId?: string): Promise<string | undefined> {
  try {
    return (await client.workflow.getHandle(workflowId, runId).describe()).runId;
  } catch (error) {
    if (error instanceof WorkflowNotFoundError || isNotFound(error)) return undefined;
    throw error;
  }
}

function isNotFound(error: unknown): boolean {
  return (error as { code?: unknown }).code === NOT_FOUND;
}

/** Starts the contact's erasure, or joins the one running; the caller may wait for its result. */
export async function startContactErasure(
  temporal: Client,
  contactId: string,
  taskQueue: string = TASK_QUEUE,
): Promise<WorkflowHandle<typeof contactErasure>> {
  return withTemporal(
    temporal,
    () =>
      temporal.workflow.start(contactErasure, {
        workflowId: contactErasureWorkflowId(contactId),
        taskQueue,
        args: [{ contactId }],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
        staticSummary: `Erasure of contact ${contactId}`,
        staticDetails:
          'Deletes the messages, files, timeline and workflows of the contact’s conversations; keeps anonymous tombstones for reports',
      }),
    { what: 'starting the erasure', whenAway: 'nothing was erased yet; repeat the request' },
  );
}

/**
 * Creates the task queue's daily retention sweep unless it exists: every worker calls this when it starts, the
 * first one creates it. The sweep runs at 03:00 UTC; a sweep still running then is not started twice.
 */
export async function ensureRetentionSchedule(temporal: Client, taskQueue: string = TASK_QUEUE): Promise<void> {
  try {
    await temporal.schedule.create({
      scheduleId: retentionScheduleId(taskQueue),
      spec: { calendars: [{ hour: 3, minute: 0 }] },
      action: {
        type: 'startWorkflow',
        workflowType: retentionSweep,
        workflowId: retentionScheduleId(taskQueue),
        taskQueue,
        args: [{}],
        staticSummary: `Retention sweep of task queue '${taskQueue}'`,
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
      state: { note: 'Erases closed conversations older than their account’s retention (retentionDays)' },
    });
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
  }
}
