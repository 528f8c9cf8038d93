import {
  ActivityCancellationType,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { mailboxTaskQueue } from './ids.js';
import { mailboxSettingsChangedSignal, quarantinedMailRequestedSignal } from './messages.js';

// One IMAP session per activity run (up to ~10 min of IDLE); heartbeats on a clock show it is alive.
// Connection failures are retried with backoff, forever: the UID cursor makes a late start lose nothing.
const imap = proxyActivities<Activities>({
  startToCloseTimeout: '15 minutes',
  // Short, because cancellation reaches an activity with its next heartbeat, and the SDK throttles them to 80% of this.
  heartbeatTimeout: '15 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes' },
});

export interface MailboxWorkflowInput {
  channelId: string;
}

// Keeps the history short: each session is a handful of events.
const SESSIONS_PER_RUN = 200;
// The pause after a session that could not connect, doubled each time up to the maximum (as the activity's retries were).
const UNREACHABLE_FIRST_PAUSE_SECONDS = 5;
const UNREACHABLE_MAX_PAUSE_SECONDS = 300;

/**
 * Keeps one channel's IMAP mailbox in sync for as long as IMAP is enabled on it: IDLE push where
 * the server supports it, polling at the channel's interval where it does not.
 */
export async function mailboxWorkflow({ channelId }: MailboxWorkflowInput): Promise<void> {
  let startOverRequested = false;
  let session: CancellationScope | undefined;
  // Either way the session in progress ends, and the next one reads the settings and the requested mail afresh.
  const startOver = () => {
    startOverRequested = true;
    session?.cancel();
  };
  setHandler(mailboxSettingsChangedSignal, startOver);
  setHandler(quarantinedMailRequestedSignal, startOver);

  let failedSessions = 0;
  let lastSession = '';
  for (let sessions = 0; sessions < SESSIONS_PER_RUN && !workflowInfo().continueAsNewSuggested; sessions++) {
    startOverRequested = false;
    setCurrentDetails(`Syncing the mailbox (IDLE keeps the session open for new mail)${lastSession}`);
    session = new CancellationScope();
    // Sessions scheduled before the mailbox queue existed ran on the workflow's own queue; replays keep them there.
    const sessionQueue = patched('mailbox-task-queue') ? { taskQueue: mailboxTaskQueue(workflowInfo().taskQueue) } : {};
    let result;
    try {
      result = await session.run(() =>
        imap.syncMailbox.executeWithOptions({ summary: 'Fetch new mail above the UID cursor, then IDLE', ...sessionQueue }, [
          { channelId },
        ]),
      );
    } catch (error) {
      if (!isCancellation(error)) throw error;
      continue; // the settings changed or mail was requested mid-session: start over
    }
    if (result.state === 'disabled') {
      setCurrentDetails('IMAP is disabled for this channel');
      return;
    }
    // Connecting or logging in failed: said in the details (the channel's health says the same), tried again after a pause.
    if (result.state === 'unreachable' && patched('mailbox-says-why-unreachable')) {
      failedSessions++;
      const pauseSeconds = Math.min(UNREACHABLE_FIRST_PAUSE_SECONDS * 2 ** (failedSessions - 1), UNREACHABLE_MAX_PAUSE_SECONDS);
      const { reason, message, host, since, serverSaid } = result.failure!;
      setCurrentDetails(
        `The mailbox at ${host} cannot be reached since ${since}: ${message} (${reason}; the server said: ${serverSaid}). ` +
          `Trying again in ${pauseSeconds} s; mail arriving meanwhile is read from the UID cursor then.`,
      );
      await condition(() => startOverRequested, pauseSeconds * 1000, {
        summary: `Try the mailbox again in ${pauseSeconds} s (${reason})`,
      });
      continue;
    }
    failedSessions = 0;
    // Sessions that can only fail until an admin connects the mailbox again are not retried: the reconnect signals.
    if (result.state === 'reauthorization_required' && patched('mailbox-waits-for-reauthorization')) {
      setCurrentDetails(
        `Waiting for an admin to connect the mailbox again (OAuth): ${result.reason ?? 'the grant was revoked or expired'}. ` +
          'Mail arriving meanwhile is read from the UID cursor once it is connected.',
      );
      await condition(() => startOverRequested);
      continue;
    }
    lastSession = `; the last session ended ${new Date().toISOString()} with ${result.ingested} new mail`;
    if (!result.idleSupported) {
      setCurrentDetails(`The server has no IDLE: polling every ${result.pollIntervalSeconds} s`);
      await condition(() => startOverRequested, result.pollIntervalSeconds * 1000, {
        summary: `Poll the mailbox again in ${result.pollIntervalSeconds} s (the server has no IDLE)`,
      });
    }
  }
  await continueAsNew<typeof mailboxWorkflow>({ channelId });
}
