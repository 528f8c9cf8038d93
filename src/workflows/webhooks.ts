import {
  ActivityFailure,
  condition,
  continueAsNew,
  isCancellation,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { webhookTaskQueue } from './ids.js';
import { webhookWakeSignal } from './messages.js';

// Webhook deliveries leave PostgreSQL through two kinds of workflow, whose histories carry ids only (the payloads
// stay in the database, where erasure reaches them):
// - the dispatcher, one per task queue, hands every committed delivery to its lane within a second or so, and
//   hands it again if its lane was lost (nothing is lost when a process dies between commit and hand-off);
// - a lane per subscription and conversation sends its deliveries one at a time in their order, waiting between
//   failed attempts with a growing backoff, so a slow subscriber or conversation holds up only its own lane.

const dispatch = proxyActivities<Activities>({
  startToCloseTimeout: '3 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 3 },
});

// A few statements, or one POST (15 s at most) and a few statements; the database away is retried without end.
const deliveryOptions = {
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
} as const;
const lookup = proxyActivities<Activities>(deliveryOptions);

export interface WebhookDispatcherInput {
  /** How often it looks for deliveries to hand over; a second unless given. */
  intervalMs?: number;
  /** How long one activity run hands over before the workflow takes stock; 10 s unless given. */
  runMs?: number;
  /** What the last run did, carried over continue-as-new for the details. */
  lastRun?: string;
}

// Short runs: a worker that is being stopped waits for the running one to end (within its grace period).
const DISPATCH_RUN_MS = 10_000;
const RUNS_PER_WORKFLOW_RUN = 100;

/** Hands committed webhook deliveries to their lanes, for as long as the task queue is served. */
export async function webhookDispatcher(input: WebhookDispatcherInput = {}): Promise<void> {
  const intervalMs = input.intervalMs ?? 1000;
  const runMs = input.runMs ?? DISPATCH_RUN_MS;
  let lastRun = input.lastRun;
  for (let runs = 0; runs < RUNS_PER_WORKFLOW_RUN && !workflowInfo().continueAsNewSuggested; runs++) {
    setCurrentDetails(`Handing webhook deliveries to their lanes (${lastRun ? `last run: ${lastRun}` : 'starting'})`);
    try {
      const run = await dispatch.dispatchWebhooks.executeWithOptions(
        { summary: `Hand committed webhook deliveries to their lanes for ${runMs / 1000} s` },
        [{ taskQueue: workflowInfo().taskQueue, runMs, intervalMs }],
      );
      lastRun = run.stoppedEarly ? `${run.lanes} lanes; stopped: ${run.stoppedEarly}` : `${run.lanes} lanes`;
    } catch (error) {
      if (isCancellation(error) || !(error instanceof ActivityFailure)) throw error;
      lastRun = `failed: ${error.cause?.message ?? error.message}`;
      await sleep(intervalMs * 5, { summary: 'Try handing over webhook deliveries again' });
    }
  }
  await continueAsNew<typeof webhookDispatcher>({ ...input, ...(lastRun ? { lastRun } : {}) });
}

export interface WebhookLaneInput {
  subscriptionId: string;
  conversationId: string;
}

/** How long an idle lane waits for more before it ends (the dispatcher starts it again when there is). */
const IDLE_MS = 60_000;
const DELIVERIES_PER_RUN = 50;

/** Sends one subscription's deliveries of one conversation, in order, each until it is delivered or given up. */
export async function webhookLane(input: WebhookLaneInput): Promise<void> {
  // The attempts run on a queue of their own: slow subscribers never hold a conversation's activity slot.
  const deliver = proxyActivities<Activities>({ ...deliveryOptions, taskQueue: webhookTaskQueue(workflowInfo().taskQueue) });
  let wakes = 0;
  setHandler(webhookWakeSignal, () => {
    wakes++;
  });
  for (let handled = 0; handled < DELIVERIES_PER_RUN && !workflowInfo().continueAsNewSuggested;) {
    const seen = wakes;
    const next = await lookup.takeNextWebhookDelivery.executeWithOptions({ summary: 'Find the next delivery' }, [input]);
    if (!next) {
      setCurrentDetails('Nothing to deliver; waiting for the next event');
      if (!(await condition(() => wakes > seen, IDLE_MS))) return;
      continue;
    }
    for (let attempt = 1; ; attempt++) {
      const before = wakes;
      setCurrentDetails(`Delivering ${next.eventType} ${next.deliveryId} (attempt ${attempt})`);
      const result = await deliver.attemptWebhookDelivery.executeWithOptions(
        { summary: `Deliver ${next.eventType} (attempt ${attempt})` },
        [{ deliveryId: next.deliveryId }],
      );
      if (result.outcome !== 'retry') break;
      const wait = `${Math.round(result.retryInMs / 1000)} s`;
      setCurrentDetails(`${next.eventType} ${next.deliveryId} failed (${result.failure}); trying again in ${wait}`);
      // A wake (the subscription enabled again, a redelivery) tries at once; otherwise after the backoff.
      await condition(() => wakes > before, result.retryInMs);
    }
    handled++;
  }
  await continueAsNew<typeof webhookLane>(input);
}
