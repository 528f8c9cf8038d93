import { WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import { webhookDispatcherWorkflowId, webhookLaneWorkflowId, TASK_QUEUE } from '../workflows/ids.js';
import { webhookWakeSignal } from '../workflows/messages.js';
import { webhookDispatcher, webhookLane, type WebhookDispatcherInput, type WebhookLaneInput } from '../workflows/webhooks.js';

/** Starts the task queue's webhook dispatcher unless it runs already: every worker calls this when it starts. */
export async function startWebhookDispatcher(
  temporal: Client,
  taskQueue: string = TASK_QUEUE,
  input: WebhookDispatcherInput = {},
): Promise<void> {
  await temporal.workflow.start(webhookDispatcher, {
    workflowId: webhookDispatcherWorkflowId(taskQueue),
    taskQueue,
    args: [input],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    staticSummary: `Webhook dispatcher of task queue '${taskQueue}'`,
    staticDetails: 'Hands committed webhook deliveries to the lane of their subscription and conversation',
  });
}

/** Wakes the lane of a subscription and conversation, starting it when none runs. */
export async function wakeWebhookLane(temporal: Client, taskQueue: string, lane: WebhookLaneInput): Promise<void> {
  await temporal.workflow.signalWithStart(webhookLane, {
    workflowId: webhookLaneWorkflowId(lane.subscriptionId, lane.conversationId),
    taskQueue,
    args: [lane],
    signal: webhookWakeSignal,
    signalArgs: [],
    staticSummary: 'Webhook deliveries of one subscription and conversation, in order',
  });
}
