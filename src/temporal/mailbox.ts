import { WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import { mailboxWorkflow } from '../workflows/mailbox.js';
import { mailboxWorkflowId, TASK_QUEUE } from '../workflows/ids.js';
import { mailboxSettingsChangedSignal, quarantinedMailRequestedSignal } from '../workflows/messages.js';
import { withTemporal } from './gateway.js';

type MailboxSignal = typeof mailboxSettingsChangedSignal | typeof quarantinedMailRequestedSignal;

/** Signals a channel's mailbox workflow, starting it if it is not running (it reads its settings and ends if IMAP is off). */
async function signalMailbox(
  temporal: Client,
  channel: { id: string; name: string },
  signal: MailboxSignal,
  taskQueue: string,
  whenAway: string,
): Promise<void> {
  await withTemporal(
    temporal,
    () =>
      temporal.workflow.signalWithStart(mailboxWorkflow, {
        workflowId: mailboxWorkflowId(channel.id),
        taskQueue,
        args: [{ channelId: channel.id }],
        signal,
        signalArgs: [],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        staticSummary: `IMAP mailbox of channel '${channel.name}'`,
        staticDetails: `Channel ${channel.id}`,
      }),
    { whenAway },
  );
}

/**
 * Tells a channel's mailbox workflow that its IMAP settings changed, starting it if it is not running.
 * With IMAP disabled the workflow reads that and ends, so this one call covers enable, edit and disable.
 */
export async function applyMailboxSettings(
  temporal: Client,
  channel: { id: string; name: string },
  taskQueue: string = TASK_QUEUE,
  whenAway = 'the settings are saved; repeat the request to start or stop the IMAP mailbox sync',
): Promise<void> {
  await signalMailbox(temporal, channel, mailboxSettingsChangedSignal, taskQueue, whenAway);
}

/**
 * Tells a channel's mailbox workflow that quarantined mail is marked for download (the rows say which):
 * its next session fetches it by UID. The marks are in the database, so a lost signal only delays them.
 */
export async function requestQuarantinedMail(
  temporal: Client,
  channel: { id: string; name: string },
  taskQueue: string = TASK_QUEUE,
): Promise<void> {
  await signalMailbox(
    temporal,
    channel,
    quarantinedMailRequestedSignal,
    taskQueue,
    "the mail is marked for download; the mailbox's next session fetches it, or reprocess it again later",
  );
}
