import { type Kysely, type Migration, type MigrationProvider, Migrator } from 'kysely';
import * as initial from './migrations/0001_initial.js';
import * as imapMailboxes from './migrations/0002_imap_mailboxes.js';
import * as messageContent from './migrations/0003_message_content.js';
import * as loopSafetyAndReplyTo from './migrations/0004_loop_safety_and_reply_to.js';
import * as orchestration from './migrations/0005_orchestration.js';
import * as api from './migrations/0006_api.js';
import * as hostileInput from './migrations/0007_hostile_input.js';
import * as sendersAndMailboxLimits from './migrations/0008_senders_and_mailbox_limits.js';
import * as imapHistoryEnd from './migrations/0009_imap_history_end.js';
import * as deliveryStatus from './migrations/0010_delivery_status.js';
import * as queueMembership from './migrations/0011_queue_membership.js';
import * as inboundResumeLease from './migrations/0012_inbound_resume_lease.js';
import * as activityEffects from './migrations/0013_activity_effects.js';
import * as inboundSources from './migrations/0014_inbound_sources.js';
import * as mailboxImports from './migrations/0016_mailbox_imports.js';
import * as forwardingConfirmations from './migrations/0015_forwarding_confirmations.js';
import * as oauthMailboxes from './migrations/0017_oauth_mailboxes.js';
import * as sentFolder from './migrations/0018_sent_folder.js';
import * as channelHealth from './migrations/0019_channel_health.js';
import * as replyContent from './migrations/0020_reply_content.js';
import * as replyTiming from './migrations/0022_reply_timing.js';
import * as languageAndSignatures from './migrations/0021_language_and_signatures.js';
import * as erasureAndRetention from './migrations/0024_erasure_and_retention.js';
import * as webhooks from './migrations/0023_webhooks.js';

// Migrations are imported, not read from disk, so they work the same from tsx, tests and a bundle.
const migrations: Record<string, Migration> = {
  '0001_initial': initial,
  '0002_imap_mailboxes': imapMailboxes,
  '0003_message_content': messageContent,
  '0004_loop_safety_and_reply_to': loopSafetyAndReplyTo,
  '0005_orchestration': orchestration,
  '0006_api': api,
  '0007_hostile_input': hostileInput,
  '0008_senders_and_mailbox_limits': sendersAndMailboxLimits,
  '0009_imap_history_end': imapHistoryEnd,
  '0010_delivery_status': deliveryStatus,
  '0011_queue_membership': queueMembership,
  '0012_inbound_resume_lease': inboundResumeLease,
  '0013_activity_effects': activityEffects,
  '0014_inbound_sources': inboundSources,
  '0016_mailbox_imports': mailboxImports,
  '0015_forwarding_confirmations': forwardingConfirmations,
  '0017_oauth_mailboxes': oauthMailboxes,
  '0018_sent_folder': sentFolder,
  '0019_channel_health': channelHealth,
  '0020_reply_content': replyContent,
  '0022_reply_timing': replyTiming,
  '0021_language_and_signatures': languageAndSignatures,
  '0024_erasure_and_retention': erasureAndRetention,
  '0023_webhooks': webhooks,
};

const provider: MigrationProvider = { getMigrations: async () => migrations };

export async function migrateToLatest(db: Kysely<any>): Promise<void> {
  const migrator = new Migrator({ db, provider });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((result) => result.status === 'Error');
  if (error || failed) {
    const cause = error instanceof Error ? error : new Error(String(error));
    throw new Error(`Database migration ${failed?.migrationName ?? ''} failed: ${cause.message}`, { cause });
  }
}
