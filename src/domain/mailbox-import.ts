// The words a mailbox import is told in, shared by the database schema, the workflow, its activity and the API.

export const MAILBOX_IMPORT_STATES = ['uploading', 'uploaded', 'running', 'completed', 'failed', 'cancelled'] as const;
export type MailboxImportState = (typeof MAILBOX_IMPORT_STATES)[number];

/** Where an import stands, as its workflow and the activity's heartbeat show it. */
export interface MailboxImportProgress {
  state: MailboxImportState;
  bytesTotal: number;
  bytesProcessed: number;
  imported: number;
  duplicates: number;
  rejected: number;
  skipped: number;
  failureReason: string | null;
}

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
