import {
  ActivityFailure,
  continueAsNew,
  isCancellation,
  proxyActivities,
  setCurrentDetails,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { StalledMailPass } from '../activities/reconcile.js';

// A long-lived workflow rather than a Temporal Schedule: a schedule starts a new workflow execution at every tick
// (thousands a day at this pace, crowding the UI's workflow list), while this is one entry whose current details
// say what the last pass did. Every worker starts it with USE_EXISTING under one id per task queue, which is
// idempotent without the schedule's create-or-update handling, and tests set its pace through the input.

const reconcile = proxyActivities<Activities>({
  // A pass stops taking rows after a minute; the rows it holds are free again after a few more.
  startToCloseTimeout: '3 minutes',
  heartbeatTimeout: '1 minute',
  // A pass that keeps failing (the database away) is reported in the details; the next one tries again.
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 3 },
});

export interface MailReconcilerInput {
  /** The pause between passes; 25 s unless given (tests use a second or two). */
  intervalMs?: number;
  /** Mail younger than this is left to the delivery storing it; 15 s unless given. */
  graceMs?: number;
  /** What the last pass did, carried over continue-as-new for the details. */
  lastPass?: string;
}

const DEFAULT_INTERVAL_MS = 25_000;
const DEFAULT_GRACE_MS = 15_000;
// Each pass is about a dozen events: the history stays around a thousand.
const PASSES_PER_RUN = 100;

/** A pass in a few words: "none", "resumed 3", "resumed 1, 1 quarantined; stopped: Temporal did not answer". */
export function describePass(pass: StalledMailPass): string {
  const counts = [
    `resumed ${pass.resumed}`,
    ...(pass.quarantined > 0 ? [`${pass.quarantined} quarantined`] : []),
    ...(pass.failed > 0 ? [`${pass.failed} failed`] : []),
  ];
  const done = pass.found === 0 ? 'none' : counts.join(', ');
  return pass.stoppedEarly ? `${done}; stopped: ${pass.stoppedEarly}` : done;
}

/**
 * Finds mail that was stored but never handed to its conversation (the sender did not post again after a 503,
 * an IMAP session or the process died in between) and finishes its delivery, every `intervalMs`, for as long as
 * the task queue is served. One runs per task queue, however many workers serve it.
 */
export async function mailReconciler(input: MailReconcilerInput = {}): Promise<void> {
  const intervalMs = input.intervalMs ?? DEFAULT_INTERVAL_MS;
  const graceMs = input.graceMs ?? DEFAULT_GRACE_MS;
  const pause = `${intervalMs / 1000} s`;
  let lastPass = input.lastPass;
  for (let passes = 0; passes < PASSES_PER_RUN && !workflowInfo().continueAsNewSuggested; passes++) {
    const lastTime = lastPass ? `${lastPass} last time` : 'first pass';
    setCurrentDetails(`Resuming stored mail that was never handed to its conversation (${lastTime})`);
    try {
      const pass = await reconcile.resumeStalledMail.executeWithOptions(
        { summary: `Resume stored mail that was never handed to its conversation (${lastTime})` },
        [{ graceMs }],
      );
      lastPass = describePass(pass);
    } catch (error) {
      if (isCancellation(error) || !(error instanceof ActivityFailure)) throw error;
      lastPass = `failed: ${error.cause?.message ?? error.message}`;
    }
    setCurrentDetails(`Last pass: ${lastPass}. The next one in ${pause}`);
    await sleep(intervalMs, { summary: `Look for stalled mail again in ${pause}` });
  }
  await continueAsNew<typeof mailReconciler>({ ...input, lastPass });
}
