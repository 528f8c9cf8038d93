import { WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import { mailboxImport } from '../workflows/mailbox-import.js';
import { mailboxImportWorkflowId, TASK_QUEUE } from '../workflows/ids.js';
import { withTemporal } from './gateway.js';

/** Starts the workflow that imports an uploaded export; starting it again while it runs changes nothing. */
export async function startMailboxImport(
  temporal: Client,
  mailboxImportRow: { id: string; channelId: string; channelName: string; bytes: number },
  taskQueue: string = TASK_QUEUE,
): Promise<void> {
  await withTemporal(
    temporal,
    () =>
      temporal.workflow.start(mailboxImport, {
        workflowId: mailboxImportWorkflowId(mailboxImportRow.id),
        taskQueue,
        args: [{ importId: mailboxImportRow.id }],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        staticSummary: `Mailbox import into channel '${mailboxImportRow.channelName}' (${mailboxImportRow.bytes} bytes uploaded)`,
        staticDetails: `Import ${mailboxImportRow.id} of channel ${mailboxImportRow.channelId}`,
      }),
    { what: 'starting the mailbox import', whenAway: 'the upload was not kept; upload the export again' },
  );
}
