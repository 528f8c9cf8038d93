import { WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import { mailReconcilerWorkflowId, TASK_QUEUE } from '../workflows/ids.js';
import { mailReconciler, type MailReconcilerInput } from '../workflows/reconciler.js';

/**
 * Starts the task queue's mail reconciler unless it runs already: every worker calls this when it starts, and
 * the one that comes first starts it. Input given while one runs is ignored (the running one keeps its own).
 */
export async function startMailReconciler(
  temporal: Client,
  taskQueue: string = TASK_QUEUE,
  input: MailReconcilerInput = {},
): Promise<void> {
  await temporal.workflow.start(mailReconciler, {
    workflowId: mailReconcilerWorkflowId(taskQueue),
    taskQueue,
    args: [input],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    staticSummary: `Mail reconciler of task queue '${taskQueue}'`,
    staticDetails:
      'Finishes the delivery of stored mail that never reached its conversation (a 503 nobody retried, a process that died)',
  });
}
