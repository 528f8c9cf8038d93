import { continueAsNew, proxyActivities, setCurrentDetails, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { mailboxTaskQueue } from './ids.js';
import { describeImport, type MailboxImportProgress } from '../domain/mailbox-import.js';

// Each run heartbeats the position of the next mail, which the import's row keeps too: a worker that dies mid-run
// loses nothing, the retry goes on from there. A run over an export as uploaded takes half a minute, a gzipped
// one (unpacked from its start at every run) goes to the end. Failures of the database or Temporal are retried
// for as long as they last; an export that cannot be read ends the import, not the retries.
const importer = proxyActivities<Activities>({
  startToCloseTimeout: '24 hours',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

export interface MailboxImportInput {
  importId: string;
}

// Each run of the activity is a handful of events.
const RUNS_PER_WORKFLOW_RUN = 500;

/**
 * Imports one uploaded mailbox export (mbox or Maildir tar) into its channel, mail by mail, as the first sync of a
 * mailbox imports history: stored and threaded, never answered automatically. Ends when the export is read,
 * cannot be read, or the import is cancelled (between two mails).
 */
export async function mailboxImport({ importId }: MailboxImportInput): Promise<MailboxImportProgress> {
  setCurrentDetails("Importing: the running activity's heartbeat details say how far");
  for (let runs = 0; runs < RUNS_PER_WORKFLOW_RUN && !workflowInfo().continueAsNewSuggested; runs++) {
    // On the mailbox sessions' queue: a run may read for hours (a gzipped export), never in a conversation's slot.
    const progress = await importer.importMailboxExport.executeWithOptions(
      {
        summary: 'Import the next mails of the export through the ingest',
        taskQueue: mailboxTaskQueue(workflowInfo().taskQueue),
      },
      [{ importId }],
    );
    setCurrentDetails(describeImport(progress));
    if (progress.state !== 'running') return progress;
  }
  return continueAsNew<typeof mailboxImport>({ importId });
}
