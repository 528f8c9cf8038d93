import { continueAsNew, proxyActivities, setCurrentDetails, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { MailboxImportProgress } from '../activities/mailbox-import.js';

// Each run imports for half a minute and heartbeats the position of the next mail, which the import's row keeps
// too: a worker that dies mid-run loses nothing, the retry goes on from there. Failures of the database or
// Temporal are retried for as long as they last; an export that cannot be read ends the import, not the retries.
const importer = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

export interface MailboxImportInput {
  importId: string;
}

// Each run of the activity is a handful of events.
const RUNS_PER_WORKFLOW_RUN = 500;

/** The progress in words, as the Temporal UI shows it. */
export function describeImport(progress: MailboxImportProgress): string {
  const percent = progress.bytesTotal > 0 ? Math.floor((progress.bytesProcessed / progress.bytesTotal) * 100) : 100;
  const mails =
    `${progress.imported} imported, ${progress.duplicates} duplicates, ${progress.rejected} rejected` +
    (progress.skipped > 0 ? `, ${progress.skipped} other entries skipped` : '');
  switch (progress.state) {
    case 'completed':
      return `Completed: ${mails}`;
    case 'failed':
      return `Failed: ${progress.failureReason ?? 'unknown reason'} (${mails})`;
    case 'cancelled':
      return `Cancelled: ${mails}`;
    default:
      return `Importing: ${percent}% of ${progress.bytesTotal} bytes read; ${mails}`;
  }
}

/**
 * Imports one uploaded mailbox export (mbox or Maildir tar) into its channel, mail by mail, as the first sync of a
 * mailbox imports history: stored and threaded, never answered automatically. Ends when the export is read,
 * cannot be read, or the import is cancelled (between two mails).
 */
export async function mailboxImport({ importId }: MailboxImportInput): Promise<MailboxImportProgress> {
  setCurrentDetails('Importing: starting');
  for (let runs = 0; runs < RUNS_PER_WORKFLOW_RUN && !workflowInfo().continueAsNewSuggested; runs++) {
    const progress = await importer.importMailboxExport.executeWithOptions(
      { summary: 'Import the next mails of the export through the ingest' },
      [{ importId }],
    );
    setCurrentDetails(describeImport(progress));
    if (progress.state !== 'running') return progress;
  }
  return continueAsNew<typeof mailboxImport>({ importId });
}
