import {
  ActivityCancellationType,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { mailboxSettingsChangedSignal } from './messages.js';

// One IMAP session per activity run (up to ~10 min of IDLE); heartbeats show it is alive.
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

/**
 * Keeps one channel's IMAP mailbox in sync for as long as IMAP is enabled on it: IDLE push where
 * the server supports it, polling at the channel's interval where it does not.
 */
export async function mailboxWorkflow({ channelId }: MailboxWorkflowInput): Promise<void> {
  let settingsChanged = false;
  let session: CancellationScope | undefined;
  setHandler(mailboxSettingsChangedSignal, () => {
    settingsChanged = true;
    session?.cancel();
  });

  for (let sessions = 0; sessions < SESSIONS_PER_RUN && !workflowInfo().continueAsNewSuggested; sessions++) {
    settingsChanged = false;
    setCurrentDetails('Syncing the mailbox (IDLE keeps the session open for new mail)');
    session = new CancellationScope();
    let result;
    try {
      result = await session.run(() =>
        imap.syncMailbox.executeWithOptions({ summary: 'Fetch new mail above the UID cursor, then IDLE' }, [{ channelId }]),
      );
    } catch (error) {
      if (!isCancellation(error)) throw error;
      continue; // the settings changed mid-session: start over with the new ones
    }
    if (result.state === 'disabled') {
      setCurrentDetails('IMAP is disabled for this channel');
      return;
    }
    if (!result.idleSupported) {
      setCurrentDetails(`The server has no IDLE: polling every ${result.pollIntervalSeconds} s`);
      await condition(() => settingsChanged, result.pollIntervalSeconds * 1000, {
        summary: `Poll the mailbox again in ${result.pollIntervalSeconds} s (the server has no IDLE)`,
      });
    }
  }
  await continueAsNew<typeof mailboxWorkflow>({ channelId });
}
