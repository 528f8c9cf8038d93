import { WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import { mailboxWorkflow } from '../workflows/mailbox.js';
import { mailboxWorkflowId, TASK_QUEUE } from '../workflows/ids.js';
import { mailboxSettingsChangedSignal } from '../workflows/messages.js';

/**
 * Tells a channel's mailbox workflow that its IMAP settings changed, starting it if it is not running.
 * With IMAP disabled the workflow reads that and ends, so this one call covers enable, edit and disable.
 */
export async function applyMailboxSettings(
  temporal: Client,
  channel: { id: string; name: string },
  taskQueue: string = TASK_QUEUE,
): Promise<void> {
  await temporal.workflow.signalWithStart(mailboxWorkflow, {
    workflowId: mailboxWorkflowId(channel.id),
    taskQueue,
    args: [{ channelId: channel.id }],
    signal: mailboxSettingsChangedSignal,
    signalArgs: [],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    staticSummary: `IMAP mailbox of channel '${channel.name}'`,
    staticDetails: `Channel ${channel.id}`,
  });
}
